"""Small helpers for tests: bounded waits instead of sleeps."""

from __future__ import annotations

import re
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


def step(conn: Any, scope: str, *items: Any, owner: str = "test-owner", ttl: float = 3600.0) -> Any:
    """Run one JOB_STEP for `items` as a worker named `owner` does; its Steps, in
    item order (one Step when one item is given)."""
    from queuetopia.db import steps

    found = steps.job_step(conn, scope=scope, owner=owner, node="test-node", ttl=ttl, items=items)
    return found[0] if len(items) == 1 else found


def take(
    conn: Any, scope: str, queue: str, *, owner: str = "test-owner", claim: bool = True
) -> Any:
    """Take `queue`'s lease and (with `claim`) claim its head, in one step."""
    from queuetopia.models import StepItem

    return step(conn, scope, StepItem(queue, None, claim=claim), owner=owner)


def claim(
    conn: Any, scope: str, lease: Any, *, owner: str = "test-owner", zombies: bool = False
) -> Any:
    """Claim the head of `lease`'s queue under it (searched from the start of the line);
    with `zombies`, a job left running is returned instead, as after a takeover."""
    from queuetopia.models import StepItem

    return step(conn, scope, StepItem(lease.queue, lease, claim=True, zombies=zombies), owner=owner)


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
    owner: str = "test-owner",
) -> Any:
    """Write the end of an attempt under `lease` as the worker does (one item of
    JOB_STEP): the job as recorded, or None when the fence rejected it."""
    from queuetopia.db import store
    from queuetopia.models import Finish, StepItem, Verdict

    finish = Finish(job, Verdict(state), error, result, backoff)
    done = step(conn, scope, StepItem(lease.queue, lease, finish=finish), owner=owner)
    return store.job_get(conn, scope=scope, job_id=job.id) if done.recorded else None


def positional(name: str) -> tuple[str, list[str]]:
    """The statement `name` of queuetopia.db.queries with its named placeholders made
    positional ($1, $2, ...), as PREPARE and EXPLAIN (GENERIC_PLAN) take them; the
    names, in order."""
    from queuetopia.db import queries

    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", number, getattr(queries, name)), names
