"""What a worker tells the outside world about jobs: log lines, metrics, traces.

Observers get every event (`listener_health` only if they have it); the worker always
has the logging observer, and more can be added (`worker.observers.append(...)`, e.g.
queuetopia.metrics). An observer that raises is logged and ignored: it never stops a
job or the worker."""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING, Protocol

from .errors import capped

if TYPE_CHECKING:
    from .models import Job, Outcome

logger = logging.getLogger("queuetopia.worker")
# A log line about a job is cut to this many bytes, its traceback to twice as many.
MAX_LOG_BYTES = 4096


class CapLines(logging.Filter):
    """Cuts the worker's log records to size: a job's error text (a message of 10 MB,
    say) must not become a log line of that size. Only records with a long argument
    or a traceback cost more than a glance."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(str(record.msg)) > MAX_LOG_BYTES or any(
            isinstance(a, str) and len(a) > MAX_LOG_BYTES for a in args
        ):
            record.msg, record.args = capped(record.getMessage(), MAX_LOG_BYTES), None
        if record.exc_info and record.exc_info[1] is not None:
            trace = "".join(traceback.format_exception(record.exc_info[1]))
            if len(trace) > 2 * MAX_LOG_BYTES:
                # Handlers would format the whole traceback again: hand them the cut one.
                cut = capped(trace.rstrip(), 2 * MAX_LOG_BYTES)
                record.msg, record.args = f"{record.getMessage()}\n{cut}", None
                record.exc_info, record.exc_text = None, None
        return True


logger.addFilter(CapLines())


def first_line(text: str) -> str:
    """The first line of an error, cut to a log line's size."""
    return capped(text.split("\n", 1)[0], MAX_LOG_BYTES)


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
            verdict = "done" if outcome.ok else first_line(outcome.error or "failed")
            if outcome.snooze is not None:
                verdict = f"snoozed for {outcome.snooze:g}s"
            logger.info("end %s in %.3fs: %s", describe(job), seconds, verdict)

    def lease_lost(self, queue: str) -> None:
        logger.warning("lost the lease on queue %r", queue)

    def listener_health(self, healthy: bool) -> None:
        logger.debug("listener %s", "connected" if healthy else "disconnected")


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

    def listener_health(self, healthy: bool) -> None:
        """Optional for observers: the worker's LISTEN connection came up or went down."""
        for observer in self.observers:
            method = getattr(observer, "listener_health", None)
            if method is not None:
                _safely(method, healthy)


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
