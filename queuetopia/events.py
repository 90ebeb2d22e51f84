"""What a worker tells the outside world about jobs: log lines, metrics, traces.

Observers get every event; the worker always has the logging observer, and more can
be added (`worker.observers.append(...)`, e.g. queuetopia.metrics). An observer that
raises is logged and ignored: it never stops a job or the worker."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .executor import Outcome
    from .models import Job

logger = logging.getLogger("queuetopia.worker")


class Observer(Protocol):
    def job_started(self, job: Job) -> None: ...

    def job_ended(self, job: Job, outcome: Outcome, seconds: float) -> None: ...

    def lease_lost(self, queue: str) -> None: ...


class LogObserver:
    """One line per job start and end: queue, action, id, attempt, duration, outcome."""

    def job_started(self, job: Job) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info("start %s", describe(job))

    def job_ended(self, job: Job, outcome: Outcome, seconds: float) -> None:
        if logger.isEnabledFor(logging.INFO):
            verdict = "done" if outcome.ok else (outcome.error or "failed").splitlines()[0]
            logger.info("end %s in %.3fs: %s", describe(job), seconds, verdict)

    def lease_lost(self, queue: str) -> None:
        logger.warning("lost the lease on queue %r", queue)


class Observers:
    """Fans events out to a list of observers, isolating their failures."""

    def __init__(self, observers: list[Observer]) -> None:
        self.observers = observers

    def job_started(self, job: Job) -> None:
        for observer in self.observers:
            _safely(observer.job_started, job)

    def job_ended(self, job: Job, outcome: Outcome, seconds: float) -> None:
        for observer in self.observers:
            _safely(observer.job_ended, job, outcome, seconds)

    def lease_lost(self, queue: str) -> None:
        for observer in self.observers:
            _safely(observer.lease_lost, queue)

    def job_parked(self, job: Job) -> None:
        """A head was parked for blocking too long (docs/blocking.md); observers
        without `job_parked` (it came later) are skipped."""
        for observer in self.observers:
            method = getattr(observer, "job_parked", None)
            if method is not None:
                _safely(method, job)


def _safely(method: object, *args: object) -> None:
    try:
        method(*args)  # type: ignore[operator]
    except Exception:
        logger.exception("observer %r failed", method)


def describe(job: Job) -> str:
    return (
        f"job {job.id} queue={job.queue!r} action={job.action!r} "
        f"attempt={job.attempts}/{job.max_attempts}"
    )
