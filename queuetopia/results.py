"""Waiting for a job's result (`topia.wait`, `job.wait`): when to look again, and
what a finished job's state means for the caller (docs/results.md).

The waiter polls the job's row, 5 ms after the first look and then twice as long
each time, up to 1 s: a short job's result is back within a few milliseconds of its
end, a long one costs one primary-key read a second, and a job nobody waits for
costs nothing (no notification per finished job)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .db import store
from .db.connections import Pools
from .errors import JobCancelled, JobFailed, JobNotFound, ValidationError
from .models import Job, JobState

FIRST_PAUSE = 0.005
LONGEST_PAUSE = 1.0


class Poll:
    """The pauses between looks at one job, bounded by the caller's timeout."""

    def __init__(self, job_id: int, timeout: float) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ValidationError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        self.job_id = job_id
        self.timeout = float(timeout)
        self.deadline = time.monotonic() + self.timeout
        self.pause = FIRST_PAUSE

    def next_pause(self, job: Job | None) -> float:
        """Seconds to sleep before the next look; TimeoutError once time is up."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            state = job.state.value if job is not None else "unknown"
            raise TimeoutError(
                f"job {self.job_id} is still {state} after {self.timeout:g}s of waiting"
            )
        pause, self.pause = min(self.pause, left), min(self.pause * 2, LONGEST_PAUSE)
        return pause


def settled(job: Job | None, job_id: int, scope: str) -> bool:
    """Has the job ended (done, failed or cancelled)? JobNotFound if it is gone."""
    if job is None:
        raise JobNotFound.of(job_id, scope)
    return job.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


def outcome(job: Job | None) -> Any:
    """The result of an ended job, or the error that says why there is none."""
    assert job is not None
    if job.state == JobState.FAILED:
        raise JobFailed(job.id, job.state.value, job.error)
    if job.state == JobState.CANCELLED:
        raise JobCancelled(job.id, job.state.value, job.error)
    return job.result


class Results:
    """`wait` for the jobs of one scope; what a Job returned by an enqueue is bound to."""

    def __init__(self, scope: str, pools: Pools) -> None:
        self.scope, self._pools = scope, pools

    def wait(self, job_id: int, timeout: float = 30.0) -> Any:
        poll = Poll(job_id, timeout)
        while True:
            with self._pools.connection() as conn:
                job = store.job_get(conn, scope=self.scope, job_id=job_id)
            if settled(job, job_id, self.scope):
                return outcome(job)
            time.sleep(poll.next_pause(job))

    async def wait_async(self, job_id: int, timeout: float = 30.0) -> Any:
        poll = Poll(job_id, timeout)
        while True:
            async with self._pools.async_connection() as conn:
                job = await store.job_get_async(conn, scope=self.scope, job_id=job_id)
            if settled(job, job_id, self.scope):
                return outcome(job)
            await asyncio.sleep(poll.next_pause(job))
