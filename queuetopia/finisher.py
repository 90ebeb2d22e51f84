"""Group commit of job outcomes: runner threads that finish jobs at about the same
moment share one statement and one commit.

The runner threads combine their requests themselves (flat combining): a thread that
finds no batch in flight leads one. Before it runs the batch, it waits a moment
(at most `gather` seconds) for the outcomes of the jobs the previous batches claimed,
so that runners that were served together commit together again, instead of in a
batch of one (the first runner back) followed by a batch of the rest. It then runs
every request waiting, its own included, and hands the lead to the first request
that arrived meanwhile. An outcome with no other short job in flight, as on an idle
worker, is recorded at once on its own thread's connection.

Each queue still has at most one job in flight: a runner waits for its outcome (and
its queue's next job) before going on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .db.store import Finish
from .models import Job

Result = tuple[bool, Job | None]
RECENT = 0.005  # seconds: a job handed out longer ago is a long one, not waited for
RunBatch = Callable[[list[Finish]], list[Result]]


class _Request:
    """One runner's outcome, waiting for its batch. A runner waits on a lock taken
    at creation, released once to wake it: a third of the cost of an Event, and made
    for every job."""

    __slots__ = ("_asleep", "error", "finish", "lead", "result")

    def __init__(self, finish: Finish) -> None:
        self.finish = finish
        self._asleep = threading.Lock()
        self._asleep.acquire()
        self.lead = False  # set by the previous leader: run the next batch
        self.result: Result = (False, None)
        self.error: BaseException | None = None

    def wait(self) -> None:
        self._asleep.acquire()

    def wake(self) -> None:
        """Called by one thread at a time (the leader of the batch, or of the one
        before), at most twice: a request handed the lead runs its own batch."""
        if self._asleep.locked():
            self._asleep.release()


class Finisher:
    def __init__(self, run_batch: RunBatch, *, gather: float = 0.001, max_batch: int = 200):
        self._run_batch = run_batch
        self._gather = gather
        self._max_batch = max_batch
        self._cond = threading.Condition(threading.Lock())
        self._waiting: list[_Request] = []
        # Jobs handed out by a batch (id -> when), whose outcomes will come here.
        self._expected: dict[int, float] = {}
        self._busy = False  # a batch is in flight, or its leader is handing over
        self._gathering = False  # a leader waits for outcomes coming soon

    def abandon(self, job: Job) -> None:
        """The runner given `job` will not report its outcome here after all."""
        with self._cond:
            self._expected.pop(job.id, None)
            self._wake_leader()

    def finish(self, finish: Finish) -> Result:
        """Record `finish` (in a batch with whatever else is waiting) and return
        (recorded, claimed job) as `store.job_finish` does."""
        request = _Request(finish)
        with self._cond:
            self._expected.pop(finish.job.id, None)
            self._waiting.append(request)
            lead, self._busy = not self._busy, True
            self._wake_leader()
        if not lead:
            request.wait()
        if lead or request.lead:
            self._lead()
        if request.error is not None:
            raise request.error
        return request.result

    def _lead(self) -> None:
        deadline = time.monotonic() + self._gather
        with self._cond:
            while self._coming_soon() and len(self._waiting) < self._max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._gathering = True
                self._cond.wait(left)
                self._gathering = False
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
        try:
            self._run(batch)
        finally:
            with self._cond:
                if self._waiting:
                    self._waiting[0].lead = True
                    self._waiting[0].wake()
                else:
                    self._busy = False

    def _wake_leader(self) -> None:
        # Under self._cond. Condition.notify costs a microsecond even with nobody waiting.
        if self._gathering:
            self._cond.notify()

    def _coming_soon(self) -> bool:
        """Was a job handed out so recently that its outcome may well come within the
        gather time? A job running for longer is not waited for."""
        recent = time.monotonic() - RECENT
        return any(handed_out > recent for handed_out in self._expected.values())

    def _run(self, batch: list[_Request]) -> None:
        try:
            results = self._run_batch([r.finish for r in batch])
            for request, result in zip(batch, results, strict=True):
                request.result = result
            now = time.monotonic()
            with self._cond:
                self._expected.update((job.id, now) for _, job in results if job is not None)
        except BaseException as exc:
            for request in batch:
                request.error = exc
        finally:
            for request in batch:
                request.lead = False
                request.wake()
