"""How many jobs a worker claims ahead of its free slots (docs/deploying.md, "Claiming
ahead"). A job's end is recorded, and its queue's next job claimed, in a step: a
round trip and a commit during which the slot would stand empty. With jobs claimed
ahead, the slot starts one of them at once and the step refills the reserve.

A job claimed ahead waits in the worker until a slot frees, with its attempt counted
and its queue held: so the worker claims ahead only as many as its running jobs are
expected to free slots within WINDOW, by the mean time its recent jobs ran. Jobs of a
second or more, on few slots, are never claimed ahead; short ones, on many slots, are,
up to `limit`.

A job handed off for want of a slot says the running jobs are not ending as the recent
ones did: the worker claims none ahead until one of them ends. Else it would take the
queue it just handed off straight back (its own release wakes it too, and it often
wins the race for it), and the job would go back and forth while a worker with a free
slot waited for it."""

from __future__ import annotations

import math

# A job claimed ahead is expected to wait at most about this long for its slot.
WINDOW = 0.1
# The weight of each attempt's run time in the moving mean.
WEIGHT = 0.05
# A job claimed ahead that has waited this many mean run times for a slot (and at
# least the worker's handoff delay) is handed off: the running jobs are not ending as
# the recent ones did. Less would hand off the jobs claimed behind a wave of jobs that
# all started together, and end together.
PATIENCE_RUNS = 2


class Ahead:
    def __init__(self, limit: int, concurrency: int) -> None:
        self.limit, self.concurrency = limit, concurrency
        self.mean: float | None = None  # seconds an attempt ran, lately
        self.stalled = False  # a job was handed off: none ahead until an attempt ends

    def ran(self, seconds: float) -> None:
        """An attempt ran `seconds`."""
        seconds = max(seconds, 0.0)
        self.stalled = False
        self.mean = seconds if self.mean is None else self.mean + WEIGHT * (seconds - self.mean)

    def patience(self, least: float) -> float:
        """Seconds a job claimed ahead may wait for a slot before it is handed off."""
        return max(least, PATIENCE_RUNS * (self.mean or 0.0))

    def handed_off(self) -> None:
        """A job claimed ahead, or a held queue, waited too long for a slot."""
        self.stalled = True

    def allowed(self) -> int:
        """How many jobs may wait claimed beyond the slots now: slots free up at about
        concurrency / mean per second, so that many times WINDOW; none before an attempt
        has run."""
        if self.mean is None or self.limit == 0 or self.stalled:
            return 0
        expected = self.concurrency * WINDOW / max(self.mean, 1e-6)
        return min(self.limit, math.floor(expected))
