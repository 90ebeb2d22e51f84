"""The statements of a worker's data path (docs/design.md): the step that takes
leases, records attempts and claims heads (JOB_STEP), the search for due queues, the
heartbeat's renewal and the release of leases, and the worker's housekeeping. Each
is sync (the worker's housekeeping and heartbeat threads, `queuetopia.testing.drain`),
but the step, which the worker's event loop runs, also has an async twin: the two
differ only in `await`, around one function that builds the parameters and one that
reads the rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from ..models import Finish, Found, Job, Lease, Position, Step, StepItem
from . import queries
from .rows import AsyncConn, Conn, fetch, fetch_async, job_of, transaction
from .store import job_prune_batch

# Any fixed number: "prue". Only one worker of a scope prunes at a time.
PRUNE_LOCK_KEY = 0x70727565

# A released lease: the lease, the floor of its queue for the next holder, and the
# rewinds its holder had applied.
Release = tuple[Lease, Position | None, int]


# -- the step ----------------------------------------------------------------------


def job_step(
    conn: Conn, *, scope: str, owner: str, node: str, ttl: float, items: Sequence[StepItem]
) -> list[Step]:
    """Run JOB_STEP for `items` (one per queue); one Step per item, in item order."""
    found = fetch(conn, queries.JOB_STEP, _step_params(scope, owner, node, ttl, items))
    return _steps(found, items)


async def job_step_async(
    conn: AsyncConn,
    *,
    scope: str,
    owner: str,
    node: str,
    ttl: float,
    items: Sequence[StepItem],
    prepared: bool = False,
) -> list[Step]:
    """`job_step` on the worker's loop; with `prepared`, through the statement its
    connection prepared (queries.JOB_STEP_PREPARE)."""
    params = _step_params(scope, owner, node, ttl, items)
    if prepared:
        found = await fetch_async(conn, queries.JOB_STEP_EXECUTE, params, client_side=True)
    else:
        found = await fetch_async(conn, queries.JOB_STEP, params)
    return _steps(found, items)


def _step_params(
    scope: str, owner: str, node: str, ttl: float, items: Sequence[StepItem]
) -> dict[str, Any]:
    batch = Jsonb([_item_record(item) for item in items])
    return {"scope": scope, "owner": owner, "node": node, "ttl": float(ttl), "batch": batch}


def _item_record(item: StepItem) -> dict[str, Any]:
    floor, lease = item.floor, item.lease
    record: dict[str, Any] = {
        "in_queue": item.queue,
        # 32 hex digits: PostgreSQL reads a uuid without its dashes, and .hex costs a
        # third of str().
        "in_lease": None if lease is None else lease.lease_id.hex,
        "in_acquire": lease is None,
        "in_floor_at": None if floor is None else floor[0].isoformat(),
        "in_floor_seq": None if floor is None else floor[1],
        "in_seen": item.seen,
        "in_zombies": item.zombies,
        "in_retry": item.retry,
        "in_claim": item.claim,
    }
    if item.finish is not None:
        record.update(_finish_record(item.finish))
    return record


def _finish_record(f: Finish) -> dict[str, Any]:
    job_lease = f.job.lease_id
    return {
        "in_id": f.job.id,
        "in_attempts": f.job.attempts,
        "in_job_lease": None if job_lease is None else job_lease.hex,
        "in_state": f.state,
        "in_error": f.error,
        "in_result": f.result,
        "in_backoff": f.backoff,
    }


def _steps(found: list[dict[str, Any]], items: Sequence[StepItem]) -> list[Step]:
    by_queue = {row["step_queue"]: row for row in found}
    return [_step(by_queue[item.queue], item) for item in items]


def _step(row: dict[str, Any], item: StepItem) -> Step:
    taken = item.lease is None and row["leased"]
    lease = None
    if row["leased"]:
        token = row["step_token"] if taken else item.lease.token  # type: ignore[union-attr]
        lease = Lease(item.queue, row["step_lease"], token)
    floor = item.floor
    if taken:
        at, seq = row["step_floor_at"], row["step_floor_seq"]
        floor = None if at is None else (at, seq)
    searched, outcome, now = row["search_at"], row["outcome"], row["db_now"]
    return Step(
        queue=item.queue,
        lease=lease,
        taken=taken,
        due=bool(row["due"]),
        floor=floor,
        seen=row["step_seen"] if taken else item.seen,
        takeover=bool(taken and row["step_takeover"]),
        recorded=bool(row["recorded"]),
        searched=bool(row["searched"]),
        searched_from=None if searched is None else (searched, row["search_seq"]),
        quiet=bool(row["quiet"]),
        rewinds=row["rewinds"] or 0,
        paused=bool(row["paused"]),
        found=None if outcome is None else Found(outcome),
        job=None if outcome is None else _job(row),  # last: it takes the step's columns out
        db_now=now,
    )


_STEP_ONLY = (
    "step_queue", "leased", "due", "step_lease", "step_token", "step_floor_at", "step_floor_seq",
    "step_seen", "step_takeover", "recorded", "searched", "search_at", "search_seq", "quiet",
    "rewinds",
    "paused", "rewinds_settled", "db_now", "outcome",
)  # fmt: skip


def _job(row: dict[str, Any]) -> Job:
    for name in _STEP_ONLY:
        del row[name]
    return job_of(row)


# -- finding and giving back queues ---------------------------------------------------


def _due_params(
    scope: str, limit: int, queues: list[str] | None, skip: list[str]
) -> dict[str, Any]:
    return {"scope": scope, "limit": limit, "queues": queues, "skip": skip}


def queue_due(
    conn: Conn, *, scope: str, limit: int, queues: list[str] | None, skip: list[str]
) -> list[str]:
    """Up to `limit` due queues no live lease holds, the longest waiting first."""
    found = fetch(conn, queries.QUEUE_DUE, _due_params(scope, limit, queues, skip))
    return [row["queue"] for row in found]


def _release_params(scope: str, releases: Sequence[Release]) -> dict[str, Any]:
    batch = [
        {
            "in_queue": lease.queue,
            "in_lease": lease.lease_id.hex,
            "in_floor_at": None if floor is None else floor[0].isoformat(),
            "in_floor_seq": None if floor is None else floor[1],
            "in_seen": seen,
        }
        for lease, floor, seen in releases
    ]
    return {"scope": scope, "batch": Jsonb(batch)}


def lease_release(conn: Conn, *, scope: str, releases: Sequence[Release]) -> dict[str, bool]:
    """Release the leases; per queue released, whether its ready_at hint was settled
    (false: a producer of the queue had not committed, the hint stays early)."""
    found = fetch(conn, queries.LEASE_RELEASE, _release_params(scope, releases))
    return {row["queue"]: bool(row["settled"]) for row in found}


def lease_renew(
    conn: Conn, *, scope: str, ttl: float, leases: Sequence[tuple[Lease, Position | None]]
) -> set[str]:
    """Renew the leases, storing each queue's floor; the queues renewed (a lease
    missing is lost)."""
    params = {
        "scope": scope,
        "ttl": float(ttl),
        "queues": [lease.queue for lease, _ in leases],
        "lease_ids": [lease.lease_id for lease, _ in leases],
        "floor_ats": [None if floor is None else floor[0] for _, floor in leases],
        "floor_seqs": [None if floor is None else floor[1] for _, floor in leases],
    }
    return {row["queue"] for row in fetch(conn, queries.LEASE_RENEW, params)}


def queue_next_due(conn: Conn, *, scope: str, owner: str, queues: list[str] | None) -> float | None:
    """Seconds until a queue becomes due, or another worker's lease on a due queue
    runs out; None when there is nothing to wait for."""
    params = {"scope": scope, "owner": owner, "queues": queues}
    seconds = fetch(conn, queries.QUEUE_NEXT_DUE, params)[0]["seconds"]
    return None if seconds is None else float(seconds)


# -- after an attempt ----------------------------------------------------------------


def job_note_error(conn: Conn, *, scope: str, lease: Lease, job_id: int, note: str) -> None:
    params = {
        "scope": scope,
        "queue": lease.queue,
        "lease_id": lease.lease_id,
        "id": job_id,
        "note": note,
    }
    fetch(conn, queries.JOB_NOTE_ERROR, params)


# -- housekeeping --------------------------------------------------------------------


def job_prune_turn(conn: Conn, *, scope: str, older_than: float, batch: int) -> int:
    """One batch of pruning, by one worker of the scope at a time (the others find
    the lock taken and prune nothing)."""
    params = {"key": PRUNE_LOCK_KEY, "scope": scope}
    with transaction(conn):
        if not fetch(conn, queries.PRUNE_LOCK, params)[0]["locked"]:
            return 0
        return job_prune_batch(conn, scope=scope, older_than=older_than, batch=batch)


def db_now(conn: Conn) -> datetime:
    return fetch(conn, queries.DB_NOW, {})[0]["db_now"]  # type: ignore[no-any-return]


def periodic_register(conn: Conn, *, scope: str, name: str, tick: datetime) -> None:
    fetch(conn, queries.PERIODIC_REGISTER, {"scope": scope, "name": name, "tick": tick})


def periodic_lock(conn: Conn, *, scope: str, name: str) -> tuple[datetime, datetime] | None:
    """(last tick, database now) with the row locked, or None if another worker has it."""
    found = fetch(conn, queries.PERIODIC_LOCK, {"scope": scope, "name": name})
    return (found[0]["last_tick"], found[0]["db_now"]) if found else None


def periodic_advance(conn: Conn, *, scope: str, name: str, tick: datetime) -> None:
    fetch(conn, queries.PERIODIC_ADVANCE, {"scope": scope, "name": name, "tick": tick})
