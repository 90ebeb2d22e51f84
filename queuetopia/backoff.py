"""The retry schedule of failed jobs, and the retry policy for the worker's own
database bookkeeping (a job's schedule lives in the database, never in a sleep): its
waits are jittered, so that the workers a fault hit together do not come back in step,
and each part of a worker says once that it is failing, not at every retry."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from .errors import DatabaseConflict, DatabaseUnavailable
from .events import first_line

T = TypeVar("T")
logger = logging.getLogger("queuetopia.worker")


LONGEST_BACKOFF = 100 * 365 * 86400.0  # seconds: a century


def default_backoff(attempt: int, max_backoff: float) -> float:
    """Seconds to wait after the `attempt`-th failed attempt: 2, 3, 5, 9, 17, ..."""
    if attempt >= 64:
        return max_backoff
    return float(min(2 ** (attempt - 1) + 1, max_backoff))


def jittered(delay: float) -> float:
    """A wait between half `delay` and `delay`."""
    return random.uniform(delay / 2, delay)


class Spell:
    """A spell of failures of one part of a worker (`what`) to reach the database:
    a warning with the cause when it begins and when the cause changes (a connection
    terminated, then no slot free to make a new one), debug lines while it lasts, one
    info line when it ends (`recovered`): not a line per retry (docs/monitoring.md)."""

    def __init__(self, what: str, recovered: str) -> None:
        self.what, self.recovered = what, recovered
        self.since: float | None = None  # failing since (monotonic)
        self._told = ""  # the cause last warned about

    def failed(self, exc: BaseException) -> None:
        cause = f"{type(exc).__name__}: {first_line(str(exc))}"
        if self.since is None:
            self.since = time.monotonic()
        if cause != self._told:
            self._told = cause
            logger.warning("%s failed (%s); retrying", self.what, cause)
        else:
            logger.debug("%s failed again (%s)", self.what, cause)

    def ended(self) -> None:
        if self.since is not None:
            down, self.since, self._told = time.monotonic() - self.since, None, ""
            logger.info("%s %s after %.1fs", self.what, self.recovered, down)


def retry_bookkeeping(
    fn: Callable[[], T], *, stop: Callable[[], bool], give_up_after: float = float("inf")
) -> T:
    """Call `fn` until it succeeds, backing off while the database is unavailable.

    `stop()` returning true ends the retries (the worker is shutting down at once).
    The first try runs without tenacity: building its Retrying costs more than most
    statements the worker runs.
    """
    try:
        return fn()
    except (DatabaseUnavailable, DatabaseConflict) as exc:
        spell = Spell("database call", "succeeded")
        spell.failed(exc)

    def _stop(state: Any) -> bool:
        return stop() or stop_after_delay(give_up_after)(state)

    retrying = Retrying(
        retry=retry_if_exception_type((DatabaseUnavailable, DatabaseConflict)),
        wait=wait_random_exponential(multiplier=0.1, max=5.0),
        stop=_stop,
        before_sleep=before_sleep_log(logger, logging.DEBUG),
        reraise=True,
    )
    found = retrying(fn)
    spell.ended()
    return found
