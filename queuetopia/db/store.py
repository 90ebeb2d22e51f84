"""The only code that runs queries: each function runs one named statement on the
connection it is given, translates errors and maps rows to models."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString
from uuid import UUID

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb, JsonbLoader, JsonLoader

from ..models import Job, LeaseInfo, MinuteCounts, QueueInfo, QueueStatus, Verdict, job_from_row
from . import queries
from .translate import translate_errors

Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]


@contextmanager
def transaction(conn: Conn) -> Iterator[Conn]:
    """A transaction on `conn` (a savepoint inside the caller's), for the calls that
    must write together; errors translated."""
    with translate_errors(), conn.transaction():
        yield conn


@dataclass(frozen=True)
class Lease:
    queue: str
    lease_id: UUID
    token: int


@dataclass(frozen=True)
class Claim:
    """What claiming a queue's head found."""

    leased: bool
    claimed: bool
    head: Job | None


_JSON_OIDS = (psycopg.postgres.types["jsonb"].oid, psycopg.postgres.types["json"].oid)


def _own_loaders(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> None:
    """Decode JSON ourselves: a caller's connection (Django's, for one) may have loaders
    of its own that return JSON as text. Checking first is cheaper than registering."""
    adapters = cur.connection.adapters
    jsonb, json_ = (adapters.get_loader(oid, pq.Format.TEXT) for oid in _JSON_OIDS)
    if jsonb is JsonbLoader and json_ is JsonLoader:
        return
    cur.adapters.register_loader("jsonb", JsonbLoader)
    cur.adapters.register_loader("json", JsonLoader)


# The column names of each statement's result. Every statement is a constant of
# queries.py, so this stays small; psycopg's dict rows read them from a description
# built anew for every result, a fifth of the client time of a worker's batch
# (docs/performance.md).
_names: dict[str, tuple[str, ...]] = {}


def _names_of(
    cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any], statement: str
) -> tuple[str, ...] | None:
    """The result's column names, or None when the statement returned no rows."""
    result = cur.pgresult
    if result is None or result.status != pq.ExecStatus.TUPLES_OK:
        return None
    names = _names.get(statement)
    if names is None:
        names = _names[statement] = tuple(column.name for column in cur.description or ())
    return names


def _rows(conn: Conn, statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with translate_errors(), conn.cursor(row_factory=tuple_row) as cur:
        _own_loaders(cur)
        cur.execute(statement, params)
        names = _names_of(cur, statement)
        return (
            [] if names is None else [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        )


def _job(row: dict[str, Any]) -> Job:
    # An empty log comes back as NULL (sql/*.sql): left out, the model's default (an
    # empty list) applies without a validator call, twice per claimed job.
    if row.get("attempt_log", 0) is None:
        del row["attempt_log"]
    if row.get("operator_log", 0) is None:
        del row["operator_log"]
    return job_from_row(row)


async def _rows_async(
    conn: AsyncConn, statement: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    with translate_errors():
        async with conn.cursor(row_factory=tuple_row) as cur:
            _own_loaders(cur)
            await cur.execute(statement, params)
            names = _names_of(cur, statement)
            return (
                []
                if names is None
                else [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]
            )


def job_insert_many(conn: Conn, params: dict[str, Any], *, uniform: bool) -> list[dict[str, Any]]:
    """Run JOB_INSERT_MANY (JOB_INSERT_UNIFORM for jobs that differ only in their
    params: one value for each other column); the columns the database made for each
    job written (enqueue.Batch builds the Jobs from them and its input). `params`
    holds the params as a list of JSON texts, each validated already."""
    return _rows(conn, _insert_statement(uniform), _insert_params(params))


async def job_insert_many_async(
    conn: AsyncConn, params: dict[str, Any], *, uniform: bool
) -> list[dict[str, Any]]:
    return await _rows_async(conn, _insert_statement(uniform), _insert_params(params))


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
    rows = _rows(conn, queries.JOB_GET_UNIQUE, _unique_params(scope, pairs))
    return [_job(r) for r in rows]


async def job_get_unique_async(
    conn: AsyncConn, *, scope: str, pairs: list[tuple[str, str]]
) -> list[Job]:
    rows = await _rows_async(conn, queries.JOB_GET_UNIQUE, _unique_params(scope, pairs))
    return [_job(r) for r in rows]


def scope_notify(conn: Conn, scope: str, queue: str = "") -> None:
    _rows(conn, queries.SCOPE_NOTIFY, {"scope": scope, "queue": queue})


def lease_acquire(
    conn: Conn,
    *,
    scope: str,
    owner: str,
    limit: int,
    ttl: float,
    queues: list[str] | None,
    skip: list[str],
    node: str | None = None,
) -> tuple[list[tuple[Lease, Job | None]], int]:
    """Leases on up to `limit` due queues, longest waiting first, and with `node`, each
    queue's head claimed (None when the head is not due, paused, or a lost worker's job
    still runs). Also the number of due, free queues seen (at most `limit` + 1): more
    than `limit` means more were due than taken."""
    rows = _rows(
        conn,
        queries.LEASE_ACQUIRE,
        {
            "scope": scope,
            "owner": owner,
            "limit": limit,
            "ttl": float(ttl),
            "queues": queues,
            "skip": skip,
            "node": node,
        },
    )
    candidates = int(rows[0]["candidates"])
    taken: list[tuple[Lease, Job | None]] = []
    for row in rows:
        if row["taken_queue"] is None:
            continue
        lease = Lease(row.pop("taken_queue"), row.pop("taken_lease"), row.pop("taken_token"))
        del row["candidates"]
        taken.append((lease, None if row["id"] is None else _job(row)))
    return taken, candidates


def lease_owned(conn: Conn, *, scope: str, owner: str) -> list[Lease]:
    rows = _rows(conn, queries.LEASE_OWNED, {"scope": scope, "owner": owner})
    return [Lease(r["queue"], r["lease_id"], r["token"]) for r in rows]


def queue_any_due(conn: Conn, *, scope: str, queues: list[str] | None, skip: list[str]) -> bool:
    rows = _rows(conn, queries.QUEUE_ANY_DUE, {"scope": scope, "queues": queues, "skip": skip})
    return bool(rows[0]["exists"])


def queue_next_due(conn: Conn, *, scope: str, owner: str, queues: list[str] | None) -> float | None:
    rows = _rows(conn, queries.QUEUE_NEXT_DUE, {"scope": scope, "owner": owner, "queues": queues})
    seconds = rows[0]["seconds"]
    return None if seconds is None else float(seconds)


def lease_renew(conn: Conn, *, scope: str, ttl: float, leases: list[Lease]) -> set[str]:
    rows = _rows(
        conn,
        queries.LEASE_RENEW,
        {
            "scope": scope,
            "ttl": float(ttl),
            "queues": [lease.queue for lease in leases],
            "lease_ids": [lease.lease_id for lease in leases],
        },
    )
    return {r["queue"] for r in rows}


def lease_release(conn: Conn, *, scope: str, lease: Lease) -> bool:
    """Release the lease; return whether the queue's ready_at hint was refreshed."""
    rows = _rows(
        conn,
        queries.LEASE_RELEASE,
        {"scope": scope, "queue": lease.queue, "lease_id": lease.lease_id},
    )
    return bool(rows[0]["refreshed"])


def job_claim_head(conn: Conn, *, scope: str, lease: Lease, node: str) -> Claim:
    rows = _rows(
        conn,
        queries.JOB_CLAIM_HEAD,
        {"scope": scope, "queue": lease.queue, "lease_id": lease.lease_id, "node": node},
    )
    row = rows[0]
    leased, outcome = row.pop("leased"), row.pop("outcome")
    head = _job(row) if outcome is not None else None
    return Claim(leased=leased, claimed=outcome == "claimed", head=head)


@dataclass(frozen=True)
class Finish:
    """The end of one attempt, to record under `lease`; with `claim_next`, the queue's
    next head is claimed in the same statement."""

    lease: Lease
    job: Job
    state: Verdict
    error: str | None = None
    result: Any = None
    backoff: float | None = None
    claim_next: bool = False


def job_finish_many(
    conn: Conn, *, scope: str, node: str, batch: list[Finish]
) -> list[tuple[bool, Job | None]]:
    """Record a batch of attempts, each under its own lease, in one statement.

    Returns (recorded, claimed job) per item, in order; recorded is False when the
    item's fence rejected the write."""
    rows = _rows(
        conn,
        queries.JOB_FINISH,
        {"scope": scope, "node": node, "batch": Jsonb([_finish_record(f) for f in batch])},
    )
    recorded = set(rows[0]["recorded"] or ())
    claimed: dict[tuple[str, UUID], Job] = {}
    for row in rows:
        del row["recorded"]
        if row["id"] is not None:
            claimed[row["queue"], row["lease_id"]] = _job(row)
    return [(f.job.id in recorded, claimed.get((f.lease.queue, f.lease.lease_id))) for f in batch]


def _finish_record(f: Finish) -> dict[str, Any]:
    return {
        "in_id": f.job.id,
        "in_queue": f.lease.queue,
        # 32 hex digits: PostgreSQL reads a uuid without its dashes, and .hex costs a
        # third of str().
        "in_lease": f.lease.lease_id.hex,
        "in_job_lease": None if f.job.lease_id is None else f.job.lease_id.hex,
        "in_state": f.state,
        "in_error": f.error,
        "in_result": f.result,
        "in_backoff": f.backoff,
        "in_claim_next": f.claim_next,
    }


def job_note_error(conn: Conn, *, scope: str, lease: Lease, job_id: int, note: str) -> None:
    _rows(
        conn,
        queries.JOB_NOTE_ERROR,
        {
            "scope": scope,
            "queue": lease.queue,
            "lease_id": lease.lease_id,
            "id": job_id,
            "note": note,
        },
    )


def prune_lock(conn: Conn, *, scope: str) -> bool:
    rows = _rows(conn, queries.PRUNE_LOCK, {"key": PRUNE_LOCK_KEY, "scope": scope})
    return bool(rows[0]["locked"])


def job_prune_turn(conn: Conn, *, scope: str, older_than: float, batch: int) -> int:
    """One batch of `job_prune_batch`, by one worker of the scope at a time (the others
    find the lock taken and prune nothing)."""
    with transaction(conn):
        if not prune_lock(conn, scope=scope):
            return 0
        return job_prune_batch(conn, scope=scope, older_than=older_than, batch=batch)


PRUNE_LOCK_KEY = 0x70727565  # any fixed number: "prue"


def job_get(conn: Conn, *, scope: str, job_id: int) -> Job | None:
    rows = _rows(conn, queries.JOB_GET, {"scope": scope, "id": job_id})
    return _job(rows[0]) if rows else None


async def job_get_async(conn: AsyncConn, *, scope: str, job_id: int) -> Job | None:
    rows = await _rows_async(conn, queries.JOB_GET, {"scope": scope, "id": job_id})
    return _job(rows[0]) if rows else None


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
    rows = _rows(
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
    return [_job(r) for r in rows]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class Signature:
    """Who did an operator action, and why (recorded on the job or queue)."""

    by: str
    reason: str | None = None


def _signed(verb: str, signature: Signature) -> dict[str, Any]:
    return {"verb": verb, "by": signature.by, "reason": signature.reason}


def job_retry(conn: Conn, *, scope: str, ids: list[int], signature: Signature) -> list[Job]:
    params = {"scope": scope, "ids": ids, **_signed("retry", signature)}
    return [_job(r) for r in _rows(conn, queries.JOB_RETRY, params)]


def job_cancel(conn: Conn, *, scope: str, ids: list[int], signature: Signature) -> list[Job]:
    params = {"scope": scope, "ids": ids, **_signed("cancel", signature)}
    params["reason"] = signature.reason or "by operator"
    return [_job(r) for r in _rows(conn, queries.JOB_CANCEL, params)]


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
            scope_notify(conn, scope, queues[0] if len(queues) == 1 else "")
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
            scope_notify(conn, scope, changed[0] if len(changed) == 1 else "")
    return changed


def job_select(conn: Conn, *, scope: str, selection: dict[str, Any]) -> list[Job]:
    """The jobs an operator selection names (operations.Selection.params)."""
    params = {"scope": scope, **selection}
    return [_job(r) for r in _rows(conn, queries.JOB_SELECT, params)]


def queue_touch(conn: Conn, *, scope: str, queues: list[str]) -> None:
    _rows(conn, queries.QUEUE_TOUCH, {"scope": scope, "queues": sorted(set(queues))})


def queue_set_paused(
    conn: Conn, *, scope: str, queue: str, paused: bool, signature: Signature
) -> bool:
    """Pause or resume `queue`; whether that changed it."""
    verb = "pause" if paused else "resume"
    params = {"scope": scope, "queue": queue, "paused": paused, **_signed(verb, signature)}
    return bool(_rows(conn, queries.QUEUE_SET_PAUSED, params))


def queue_select(conn: Conn, *, scope: str, pattern: str) -> list[tuple[str, bool]]:
    rows = _rows(conn, queries.QUEUE_SELECT, {"scope": scope, "pattern": pattern})
    return [(r["queue"], r["paused"]) for r in rows]


def queue_list(conn: Conn, *, scope: str) -> list[QueueInfo]:
    return [_queue_info(scope, r) for r in _rows(conn, queries.QUEUE_LIST, {"scope": scope})]


def _queue_info(scope: str, row: dict[str, Any]) -> QueueInfo:
    head = None if row["head"] is None else Job.model_validate(row["head"])
    status = queue_status(row["paused"], head, row["has_running"])
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
    if head.state == "failed" or head.failing_since is not None:
        return QueueStatus.BLOCKED
    return QueueStatus.WAITING


def job_prune_batch(conn: Conn, *, scope: str, older_than: float, batch: int) -> int:
    with translate_errors(), conn.cursor() as cur:
        cur.execute(
            queries.JOB_PRUNE_BATCH,
            {"scope": scope, "older_than": float(older_than), "batch": batch},
        )
        return cur.rowcount


def db_now(conn: Conn) -> datetime:
    return _rows(conn, queries.DB_NOW, {})[0]["db_now"]  # type: ignore[no-any-return]


def periodic_register(conn: Conn, *, scope: str, name: str, tick: datetime) -> None:
    _rows(conn, queries.PERIODIC_REGISTER, {"scope": scope, "name": name, "tick": tick})


def periodic_lock(conn: Conn, *, scope: str, name: str) -> tuple[datetime, datetime] | None:
    """(last tick, database now) with the row locked, or None if another worker has it."""
    rows = _rows(conn, queries.PERIODIC_LOCK, {"scope": scope, "name": name})
    return (rows[0]["last_tick"], rows[0]["db_now"]) if rows else None


def periodic_advance(conn: Conn, *, scope: str, name: str, tick: datetime) -> None:
    _rows(conn, queries.PERIODIC_ADVANCE, {"scope": scope, "name": name, "tick": tick})


def queue_blocked_stats(conn: Conn, *, scope: str) -> tuple[int, float]:
    """(queues blocked, seconds the oldest blocked head has been failing)."""
    row = _rows(conn, queries.QUEUE_BLOCKED_STATS, {"scope": scope})[0]
    return int(row["blocked"]), float(row["oldest"])


# -- reads for the dashboard (docs/dashboard.md) ------------------------------------


def lease_list(conn: Conn, *, scope: str) -> list[LeaseInfo]:
    rows = _rows(conn, queries.LEASE_LIST, {"scope": scope})
    return [LeaseInfo.model_validate({**r, "scope": scope}) for r in rows]


def queue_line(conn: Conn, *, scope: str, queue: str, limit: int, offset: int) -> list[Job]:
    params = {"scope": scope, "queue": queue, "limit": limit, "offset": offset}
    return [_job(r) for r in _rows(conn, queries.QUEUE_LINE, params)]


def job_counts_per_minute(
    conn: Conn, *, scope: str, queue: str | None, minutes: int
) -> list[MinuteCounts]:
    params = {"scope": scope, "queue": queue, "minutes": minutes}
    rows = _rows(conn, queries.JOB_COUNTS_PER_MINUTE, params)
    return [MinuteCounts.model_validate(r) for r in rows]
