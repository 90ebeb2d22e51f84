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
from uuid import UUID

from psycopg.types.json import Jsonb

from ..models import AttemptId, Finish, Found, Job, Lease, Position, Step, StepItem, Verdict
from . import queries
from .rows import AsyncConn, Conn, fetch, fetch_async, job_of, transaction
from .store import bucket_prune, job_prune_batch

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


async def lease_barrier_async(
    conn: AsyncConn, *, scope: str, owner: str, queues: Sequence[str]
) -> None:
    """Wait until what this server has committed is on its synchronous standby, after
    a step retried because its reply was lost (sql/lease_barrier.sql)."""
    params = {"scope": scope, "owner": owner, "queues": list(queues)}
    await fetch_async(conn, queries.LEASE_BARRIER, params)


def _step_params(
    scope: str, owner: str, node: str, ttl: float, items: Sequence[StepItem]
) -> dict[str, Any]:
    finishes = {str(i.finish.job.id): _finish_record(i) for i in items if i.finish is not None}
    batch = Jsonb({"items": [_item_record(item) for item in items], "finishes": finishes})
    return {"scope": scope, "owner": owner, "node": node, "ttl": float(ttl), "batch": batch}


def _item_record(item: StepItem) -> dict[str, Any]:
    floor, lease, finish = item.floor, item.lease, item.finish
    return {
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
        "in_id": None if finish is None else finish.job.id,
        # What the job's attempts are once recorded: a retried step recognises its
        # first try's record by them. An attempt not started, or snoozed, is given back.
        "in_attempts": None if finish is None else finish.job.attempts - _given_back(finish),
    }


def _given_back(finish: Finish) -> int:
    return 1 if not finish.started or finish.state == Verdict.SNOOZED else 0


def _finish_record(item: StepItem) -> dict[str, Any]:
    f, lease = item.finish, item.lease
    assert f is not None
    job_lease = f.job.lease_id
    return {
        "queue": item.queue,
        "lease": None if lease is None else lease.lease_id.hex,
        "job_lease": None if job_lease is None else job_lease.hex,
        "state": f.state,
        "error": f.error,
        "result": f.result,
        "backoff": f.backoff,
        "unstarted": not f.started,
    }


def _steps(found: list[dict[str, Any]], items: Sequence[StepItem]) -> list[Step]:
    """The reply's rows put together: one `step` row (what the step did, by queue)
    and one row per job found (sql/job_step.sql)."""
    jobs: dict[str, dict[str, Any]] = {}
    for row in found:
        if row["step"] is None:
            jobs[row["queue"]] = row
        else:
            reply = _Reply(row)
    return [reply.step(item, jobs.get(item.queue)) for item in items]


class _Reply:
    """The `step` object of JOB_STEP's reply, read per item."""

    def __init__(self, row: dict[str, Any]) -> None:
        summary: dict[str, Any] = row["step"]
        self.held = set(summary["held"])
        self.taken: dict[str, list[Any]] = summary["taken"]
        self.due = set(summary["due"])
        self.recorded = set(summary["recorded"])
        self.searched: dict[str, list[Any]] = summary["searched"]
        self.rewound: dict[str, list[Any]] = summary["rewound"]
        # Heads a rate limit held back, by queue: seconds until they may start; the
        # heads that wait for other jobs. Both NULL (None) unless a step has some.
        held: dict[str, list[Any]] | None = row["rated"]
        self.rated = {queue: float(wait) for queue, wait in held.values()} if held else {}
        self.waiting: dict[str, list[int]] = row["waiting"] or {}
        self.now: datetime = row["db_now"]

    def step(self, item: StepItem, row: dict[str, Any] | None) -> Step:
        queue, lease, floor, seen = item.queue, item.lease, item.floor, item.seen
        took = self.taken.get(queue) if lease is None else None
        if took is not None:
            lease = Lease(queue, UUID(took[0]), took[1])
            floor, seen = _position(took[2], took[3]), took[4]
        elif queue not in self.held:
            lease = None
        search, rewound = self.searched.get(queue), self.rewound.get(queue)
        return Step(
            queue=queue,
            lease=lease,
            taken=took is not None,
            due=queue in self.due,
            floor=floor,
            seen=seen,
            takeover=bool(took and took[5]),
            recorded=queue in self.recorded,
            searched=search is not None,
            searched_from=floor if rewound is None else _position(*rewound),
            quiet=bool(search and search[0]),
            rewinds=search[1] if search else 0,
            paused=bool(search and search[2]),
            found=None if row is None else Found(row["outcome"]),
            job=None if row is None else _job(row),
            db_now=self.now,
            rated=self.rated.get(queue),
            awaiting=self.waiting.get(queue),
        )


def _position(at: str | None, seq: int) -> Position | None:
    return None if at is None else (datetime.fromisoformat(at), seq)


def _job(row: dict[str, Any]) -> Job:
    for name in ("step", "db_now", "rated", "waiting", "outcome"):
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
) -> tuple[set[str], list[AttemptId]]:
    """Renew the leases, storing each queue's floor; the queues renewed (a lease
    missing is lost), and the jobs running under them that an operator cancelled."""
    params = {
        "scope": scope,
        "ttl": float(ttl),
        "queues": [lease.queue for lease, _ in leases],
        "lease_ids": [lease.lease_id for lease, _ in leases],
        "floor_ats": [None if floor is None else floor[0] for _, floor in leases],
        "floor_seqs": [None if floor is None else floor[1] for _, floor in leases],
    }
    rows = fetch(conn, queries.LEASE_RENEW, params)
    cancels = [(c[0], datetime.fromisoformat(c[1])) for r in rows if (c := r["cancel"])]
    return {row["queue"] for row in rows}, cancels


def queue_next_due(conn: Conn, *, scope: str, owner: str, queues: list[str] | None) -> float | None:
    """Seconds until a queue becomes due, or another worker's lease on a due queue
    runs out; None when there is nothing to wait for."""
    params = {"scope": scope, "owner": owner, "queues": queues}
    seconds = fetch(conn, queries.QUEUE_NEXT_DUE, params)[0]["seconds"]
    return None if seconds is None else float(seconds)


# -- after an attempt ----------------------------------------------------------------


def job_await(conn: Conn, *, scope: str, queue: str, ids: list[int]) -> bool:
    """Have the jobs `ids`, which a head of `queue` waits for, wake the queue once done;
    whether one of them is done already (look at the queue again at once)."""
    params = {"scope": scope, "queue": queue, "ids": sorted(ids)}
    return len(fetch(conn, queries.JOB_AWAIT, params)) < len(set(ids))


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


def job_prune_turn(conn: Conn, *, scope: str, older_than: float | None, batch: int) -> int:
    """One batch of pruning, by one worker of the scope at a time (the others find
    the lock taken and prune nothing): finished jobs older than `older_than` (None:
    none), and rate-limit budgets full again; how many jobs."""
    params = {"key": PRUNE_LOCK_KEY, "scope": scope}
    with transaction(conn):
        if not fetch(conn, queries.PRUNE_LOCK, params)[0]["locked"]:
            return 0
        bucket_prune(conn, scope=scope, batch=batch)
        if older_than is None:
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
