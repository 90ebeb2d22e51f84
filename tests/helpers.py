"""Small helpers for tests: bounded waits instead of sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def fast_settings() -> dict[str, Any]:
    """Topia settings that keep tests quick: short leases; polling only as a backstop."""
    return {"poll_interval": 60.0, "lock_ttl": 3.0, "pool_size": 4}


def wait_for(
    condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> T:
    """Return the first truthy value of `condition()`, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def record(
    conn: Any,
    *,
    scope: str,
    lease: Any,
    job: Any,
    state: str,
    error: str | None = None,
    result: Any = None,
    backoff: float | None = None,
) -> Any:
    """Write the end of an attempt under `lease` as the completer does (one item of
    JOB_FINISH): the job as recorded, or None when the fence rejected it."""
    from queuetopia.db import store
    from queuetopia.models import Verdict

    finish = store.Finish(lease, job, Verdict(state), error, result, backoff)
    [(recorded, _)] = store.job_finish_many(conn, scope=scope, node="", batch=[finish])
    return store.job_get(conn, scope=scope, job_id=job.id) if recorded else None
