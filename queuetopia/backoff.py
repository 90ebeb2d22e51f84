"""The retry schedule of failed jobs, and the retry policy for the worker's own
database bookkeeping (a job's schedule lives in the database, never in a sleep)."""

from __future__ import annotations

import logging
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

T = TypeVar("T")
logger = logging.getLogger("queuetopia.worker")


LONGEST_BACKOFF = 100 * 365 * 86400.0  # seconds: a century


def default_backoff(attempt: int, max_backoff: float) -> float:
    """Seconds to wait after the `attempt`-th failed attempt: 2, 3, 5, 9, 17, ..."""
    if attempt >= 64:
        return max_backoff
    return float(min(2 ** (attempt - 1) + 1, max_backoff))


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
        logger.warning("database call failed (%s); retrying", type(exc).__name__)

    def _stop(state: Any) -> bool:
        return stop() or stop_after_delay(give_up_after)(state)

    retrying = Retrying(
        retry=retry_if_exception_type((DatabaseUnavailable, DatabaseConflict)),
        wait=wait_random_exponential(multiplier=0.1, max=5.0),
        stop=_stop,
        before_sleep=before_sleep_log(logger, logging.WARNING),
        reraise=True,
    )
    return retrying(fn)
