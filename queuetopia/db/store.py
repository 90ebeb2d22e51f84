"""The statements of producers, operators and readers (the worker's are in
steps.py): each function runs one named statement on the connection it is given
(rows.py translates errors) and maps rows to models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, LiteralString

from psycopg.types.json import Jsonb

from ..models import (
    Job,
    JobState,
    LeaseInfo,
    MinuteCounts,
    QueueInfo,
    QueueStatus,
    RateLimit,
    Signature,
)
from . import queries
from .notify import cancel_payloads, notify_payload
from .rows import AsyncConn, Conn, fetch, fetch_async, job_of, transaction
from .translate import translate_errors


def job_insert_many(conn: Conn, params: dict[str, Any], *, uniform: bool) -> list[dict[str, Any]]:
    """Run JOB_INSERT_MANY (JOB_INSERT_UNIFORM for jobs that differ only in their
    params: one value for each other column); the columns the database made for each
    job written (enqueue.Batch builds the Jobs from them and its input). `params`
    holds the params as a list of JSON texts, each validated already."""
    return fetch(conn, _insert_statement(uniform), _insert_params(params))


async def job_insert_many_async(
    conn: AsyncConn, params: dict[str, Any], *, uniform: bool
) -> list[dict[str, Any]]:
    return await fetch_async(conn, _insert_statement(uniform), _insert_params(params))


def _insert_params(params: dict[str, Any]) -> dict[str, Any]:
    # The JSON texts joined as is into one array: no per-element quoting of a jsonb[].
    texts = Jsonb("[" + ",".join(params["params"]) + "]", dumps=str)
    return {**params, "params": texts, "meta": Jsonb(params["meta"])}


def _insert_statement(uniform: bool) -> LiteralString:
    return queries.JOB_INSERT_UNIFORM if uniform else queries.JOB_INSERT_MANY


def _unique_params(scope: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "scope": scope,
        "queues": [queue for queue, _ in pairs],
        "unique_keys": [key for _, key in pairs],
    }


def job_get_unique(conn: Conn, *, scope: str, pairs: list[tuple[str, str]]) -> list[Job]:
    """The jobs in line holding these (queue, unique_key) pairs."""
    rows = fetch(conn, queries.JOB_GET_UNIQUE, _unique_params(scope, pairs))
    return [job_of(r) for r in rows]


async def job_get_unique_async(
    conn: AsyncConn, *, scope: str, pairs: list[tuple[str, str]]
) -> list[Job]:
    rows = await fetch_async(conn, queries.JOB_GET_UNIQUE, _unique_params(scope, pairs))
    return [job_of(r) for r in rows]


def scope_notify(conn: Conn, scope: str, *queues: str) -> None:
    """Wake the workers of `scope` for `queues` (none: for every queue)."""
    notify(conn, notify_payload(scope, list(queues) or [""]))


def notify(conn: Conn, payload: str) -> None:
    """Send `payload` on the workers' channel, delivered when `conn` commits."""
    fetch(conn, queries.SCOPE_NOTIFY, {"payload": payload})


def jobs_missing(conn: Conn, scope: str, ids: set[int]) -> list[int]:
    """The ids among `ids` that name no job of `scope`."""
    rows = fetch(conn, queries.JOB_IDS_MISSING, {"scope": scope, "ids": sorted(ids)})
    return [r["id"] for r in rows]


async def jobs_missing_async(conn: AsyncConn, scope: str, ids: set[int]) -> list[int]:
    rows = await fetch_async(conn, queries.JOB_IDS_MISSING, {"scope": scope, "ids": sorted(ids)})
    return [r["id"] for r in rows]


def job_get(conn: Conn, *, scope: str, job_id: int) -> Job | None:
    rows = fetch(conn, queries.JOB_GET, {"scope": scope, "id": job_id})
    return job_of(rows[0]) if rows else None


async def job_get_async(conn: AsyncConn, *, scope: str, job_id: int) -> Job | None:
    rows = await fetch_async(conn, queries.JOB_GET, {"scope": scope, "id": job_id})
    return job_of(rows[0]) if rows else None


def job_list(
    conn: Conn,
    *,
    scope: str,
    queue: str | None,
    action: str | None,
    state: str | None,
    search: str | None,
    limit: int,
    offset: int,
    hidden: dict[str, list[str]] | None = None,
) -> list[Job]:
    """`hidden`: action -> its sensitive paths, which `search` never matches."""
    pattern = None if search is None else "%" + _escape_like(search) + "%"
    rows = fetch(
        conn,
        queries.JOB_LIST,
        {
            "scope": scope,
            "queue": queue,
            "action": action,
            "state": state,
            "pattern": pattern,
            "hidden": Jsonb(hidden or {}),
            "limit": limit,
            "offset": offset,
        },
    )
    return [job_of(r) for r in rows]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _signed(verb: str, signature: Signature) -> dict[str, Any]:
    return {"verb": verb, "by": signature.by, "reason": signature.reason}


def job_retry(conn: Conn, *, scope: str, ids: list[int], signature: Signature) -> list[Job]:
    params = {"scope": scope, "ids": ids, **_signed("retry", signature)}
    return [job_of(r) for r in fetch(conn, queries.JOB_RETRY, params)]


def job_cancel(conn: Conn, *, scope: str, ids: list[int], signature: Signature) -> list[Job]:
    params = {"scope": scope, "ids": ids, **_signed("cancel", signature)}
    params["reason"] = signature.reason or "by operator"
    return [job_of(r) for r in fetch(conn, queries.JOB_CANCEL, params)]


def jobs_change(
    conn: Conn, *, scope: str, ids: list[int], signature: Signature, cancel: bool
) -> list[Job]:
    """Retry (or cancel) the jobs `ids` that allow it, in one transaction that touches
    their queues and wakes the workers; the jobs as changed."""
    change = job_cancel if cancel else job_retry
    with transaction(conn):
        changed = change(conn, scope=scope, ids=ids, signature=signature)
        queues = sorted({job.queue for job in changed})
        if queues:
            queue_touch(conn, scope=scope, queues=queues)
            scope_notify(conn, scope, *queues)
        running = [
            (job.id, job.attempted_at)
            for job in changed
            if job.state == JobState.RUNNING and job.attempted_at is not None
        ]
        for payload in cancel_payloads(scope, running):
            notify(conn, payload)
    return changed


def queues_set_paused(
    conn: Conn, *, scope: str, queues: list[str], paused: bool, signature: Signature
) -> list[str]:
    """Pause or resume `queues` in one transaction; the names of those it changed.
    Queue rows are locked in name order, as producers lock them."""
    changed: list[str] = []
    with transaction(conn):
        for queue in sorted(queues):
            if queue_set_paused(conn, scope=scope, queue=queue, paused=paused, signature=signature):
                changed.append(queue)
        if changed:
            scope_notify(conn, scope, *changed)
    return changed


def job_select(conn: Conn, *, scope: str, selection: dict[str, Any]) -> list[Job]:
    """The jobs an operator selection names (operations.Selection.params)."""
    params = {"scope": scope, **selection}
    return [job_of(r) for r in fetch(conn, queries.JOB_SELECT, params)]


def queue_touch(conn: Conn, *, scope: str, queues: list[str]) -> None:
    fetch(conn, queries.QUEUE_TOUCH, {"scope": scope, "queues": sorted(set(queues))})


def queue_set_paused(
    conn: Conn, *, scope: str, queue: str, paused: bool, signature: Signature
) -> bool:
    """Pause or resume `queue`; whether that changed it."""
    verb = "pause" if paused else "resume"
    params = {"scope": scope, "queue": queue, "paused": paused, **_signed(verb, signature)}
    return bool(fetch(conn, queries.QUEUE_SET_PAUSED, params))


def queue_select(conn: Conn, *, scope: str, pattern: str) -> list[tuple[str, bool]]:
    rows = fetch(conn, queries.QUEUE_SELECT, {"scope": scope, "pattern": pattern})
    return [(r["queue"], r["paused"]) for r in rows]


def queue_list(conn: Conn, *, scope: str, queue: str | None = None) -> list[QueueInfo]:
    """Every queue of the scope, or the one named."""
    rows = fetch(conn, queries.QUEUE_LIST, {"scope": scope, "queue": queue})
    return [_queue_info(scope, r) for r in rows]


def _queue_info(scope: str, row: dict[str, Any]) -> QueueInfo:
    head = None if row["head"] is None else Job.model_validate(row["head"])
    status = queue_status(row["paused"], head, row["has_running"])
    awaits: list[list[Any]] = row["awaits"] or []
    if awaits and status in (QueueStatus.WAITING, QueueStatus.BLOCKED):
        stuck = any(state in ("failed", "cancelled", "deleted") for _, state in awaits)
        status = QueueStatus.BLOCKED if stuck else QueueStatus.WAITING
    return QueueInfo(
        scope=scope,
        queue=row["queue"],
        status=status,
        paused=row["paused"],
        pending=row["pending"],
        head=head,
        blocked_since=head.failing_since if head and status == QueueStatus.BLOCKED else None,
        last_error=head.error if head else None,
        next_attempt_at=head.next_attempt_at if head else None,
        **_rated(head, row["rated"], row["db_now"]),
        waiting_for=[job_id for job_id, _ in awaits],
        held_by=_held_by(awaits),
        locked_by=row["locked_by"],
        locked_until=row["locked_until"],
        failed=row["failed"],
        oldest_failed_at=row["oldest_failed_at"],
        operator_log=row["operator_log"],
    )


def queue_status(paused: bool, head: Job | None, running: bool = False) -> QueueStatus:
    """Status of a queue; the first match wins (docs/cli.md, "inspect"). A running
    job need not be the head: an operator may have retried an earlier job while it ran."""
    if paused:
        return QueueStatus.PAUSED
    if running or (head is not None and head.state == "running"):
        return QueueStatus.RUNNING
    if head is None:
        return QueueStatus.IDLE
    if head.state == "failed" or (head.failing_since is not None and not head.snoozed):
        return QueueStatus.BLOCKED
    return QueueStatus.WAITING


def _held_by(awaits: list[list[Any]]) -> str | None:
    """'waits for job 12 (failed), job 13 (running)'."""
    if not awaits:
        return None
    return "waits for " + ", ".join(f"job {job_id} ({state})" for job_id, state in awaits)


def _rated(head: Job | None, rated: list[Any] | None, now: datetime) -> dict[str, Any]:
    """A due head's wait for a rate limit's budget, for QueueInfo."""
    if head is None or head.state != "pending" or not rated or rated[0] is None:
        return {}
    if max(head.scheduled_at, head.next_attempt_at or head.scheduled_at) > now:
        return {}  # it waits for its own time first
    return {"rate_limited_until": datetime.fromisoformat(rated[0]), "rate_limited_by": rated[1]}


def limit_set(conn: Conn, *, scope: str, limit: dict[str, Any]) -> RateLimit:
    """Create or replace a rate limit, and wake the workers (a queue that waited for
    the old budget may start now)."""
    with transaction(conn):
        row = fetch(conn, queries.LIMIT_SET, {"scope": scope, **limit})[0]
        scope_notify(conn, scope)
    return RateLimit.model_validate(row)


def limit_list(conn: Conn, *, scope: str) -> list[RateLimit]:
    return [RateLimit.model_validate(r) for r in fetch(conn, queries.LIMIT_LIST, {"scope": scope})]


def limit_remove(conn: Conn, *, scope: str, name: str) -> RateLimit | None:
    with transaction(conn):
        rows = fetch(conn, queries.LIMIT_REMOVE, {"scope": scope, "name": name})
        if rows:
            scope_notify(conn, scope)
    return RateLimit.model_validate(rows[0]) if rows else None


def job_prune_batch(conn: Conn, *, scope: str, older_than: float, batch: int) -> int:
    params = {"scope": scope, "older_than": float(older_than), "batch": batch}
    return _rowcount(conn, queries.JOB_PRUNE_BATCH, params)


def bucket_prune(conn: Conn, *, scope: str, batch: int) -> int:
    """Delete up to `batch` rate-limit budgets that are full again (the same budget
    as none); how many."""
    return _rowcount(conn, queries.BUCKET_PRUNE, {"scope": scope, "batch": batch})


def _rowcount(conn: Conn, statement: LiteralString, params: dict[str, Any]) -> int:
    with translate_errors(), conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.rowcount


def queue_blocked_stats(conn: Conn, *, scope: str) -> tuple[int, float, int]:
    """(queues blocked, seconds the oldest blocked head has been failing, queues whose
    due head waits for a rate limit's budget)."""
    row = fetch(conn, queries.QUEUE_BLOCKED_STATS, {"scope": scope})[0]
    return int(row["blocked"]), float(row["oldest"]), int(row["rated"])


# -- reads for the dashboard (docs/dashboard.md) ------------------------------------


def lease_list(conn: Conn, *, scope: str) -> list[LeaseInfo]:
    rows = fetch(conn, queries.LEASE_LIST, {"scope": scope})
    return [LeaseInfo.model_validate({**r, "scope": scope}) for r in rows]


def queue_line(conn: Conn, *, scope: str, queue: str, limit: int, offset: int) -> list[Job]:
    params = {"scope": scope, "queue": queue, "limit": limit, "offset": offset}
    return [job_of(r) for r in fetch(conn, queries.QUEUE_LINE, params)]


def job_counts_per_minute(
    conn: Conn, *, scope: str, queue: str | None, minutes: int
) -> list[MinuteCounts]:
    params = {"scope": scope, "queue": queue, "minutes": minutes}
    rows = fetch(conn, queries.JOB_COUNTS_PER_MINUTE, params)
    return [MinuteCounts.model_validate(r) for r in rows]
