"""The enqueueing workloads side by side, each system with its recommended API:

- one job per transaction from one producer: queuetopia `.delay`, PgQueuer
  `Queries.enqueue` of one job, procrastinate `defer_async` with its `lock`;
- the same from P producer processes at once, each on its own connection
  (bench/producers.py);
- 1,000 jobs for 1,000 queues in one call: queuetopia `enqueue_many`, PgQueuer one
  `Queries.enqueue` of 1,000 entrypoints, procrastinate `batch_defer_jobs_async`.

Every set is checked afterwards: every job is there, and per key in the order it
was sent (queuetopia by `seq`, the peers by id)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench.peer_drain import psycopg_connect, reset
from bench.peer_workers import (
    SCOPE,
    key_name,
    parse_payload,
    payload,
    pgqueuer_queries,
    procrastinate_app,
    queuetopia_app,
)
from bench.producers import BARRIER_TIMEOUT, Share, run_producers

Metrics = dict[str, Any]


def enqueue_single(system: str, dsn: str, n: int) -> Metrics:
    """n jobs over 100 keys, one job per transaction, from one producer."""
    reset(system, dsn)
    took = SENDERS[system](dsn, SCOPE, Share(0, 1, n), None)
    return {"jobs": n, "jobs_per_s": round(n / took, 1), "problems": check(system, dsn, n + 1)}


def enqueue_concurrent(system: str, dsn: str, n: int, producers: int) -> Metrics:
    """n jobs from `producers` processes at once, one job per transaction each."""
    reset(system, dsn)
    took = run_producers(system, dsn, SCOPE, n, producers)
    return {
        "jobs": n,
        "jobs_per_s": round(n / took, 1),
        "problems": check(system, dsn, n + producers),
    }


# -- one producer's loop, per system: warm up, wait at the barrier, send its share ----
# With no barrier (one producer in this process), each returns its own timing.


def _wait(barrier: Any) -> None:
    if barrier is not None:
        barrier.wait(BARRIER_TIMEOUT)


def _queuetopia(flavour: str) -> Callable[[str, str, Share, Any], float]:
    def send(dsn: str, scope: str, share: Share, barrier: Any) -> float:
        with queuetopia_app(dsn, flavour) as topia:
            noop = topia.actions["noop"]
            k0 = share.key(0)
            noop.delay(key_name(k0), q=k0, i=-1)  # open the pool outside the timing
            _wait(barrier)
            t0 = time.perf_counter()
            for m in range(share.count):
                k = share.key(m)
                noop.delay(key_name(k), q=k, i=m)
            return time.perf_counter() - t0

    return send


def _pgqueuer(dsn: str, scope: str, share: Share, barrier: Any) -> float:
    async def go() -> float:
        async with pgqueuer_queries(dsn) as (queries, _):
            await queries.enqueue(key_name(share.key(0)), payload(share.key(0), -1))
            _wait(barrier)
            t0 = time.perf_counter()
            for m in range(share.count):
                k = share.key(m)
                await queries.enqueue(key_name(k), payload(k, m))
            return time.perf_counter() - t0

    return asyncio.run(go())


def _procrastinate(dsn: str, scope: str, share: Share, barrier: Any) -> float:
    async def go() -> float:
        app = procrastinate_app(dsn)
        async with app.open_async():
            task = app.tasks["noop"]
            k0 = share.key(0)
            await task.configure(lock=key_name(k0)).defer_async(q=k0, i=-1)
            _wait(barrier)
            t0 = time.perf_counter()
            for m in range(share.count):
                k = share.key(m)
                await task.configure(lock=key_name(k)).defer_async(q=k, i=m)
            return time.perf_counter() - t0

    return asyncio.run(go())


SENDERS: dict[str, Callable[[str, str, Share, Any], float]] = {
    "queuetopia_async": _queuetopia("queuetopia_async"),
    "queuetopia_plain": _queuetopia("queuetopia_plain"),
    "pgqueuer": _pgqueuer,
    "procrastinate": _procrastinate,
}


# -- fan-out: 1,000 jobs for 1,000 queues in one call -----------------------------------


def enqueue_fanout(system: str, dsn: str, queues: int, calls: int) -> Metrics:
    """`calls` calls, each enqueueing one job for each of `queues` queues (keys)."""
    reset(system, dsn)
    items = [[(k, c) for k in range(queues)] for c in range(calls)]
    if system == "pgqueuer":
        took, warm = asyncio.run(_pgqueuer_fanout(dsn, items)), 0
    elif system == "procrastinate":
        took, warm = asyncio.run(_procrastinate_fanout(dsn, items)), 0
    else:
        took, warm = _queuetopia_fanout(system, dsn, items), 1
    jobs = queues * calls
    return {
        "jobs": jobs,
        "jobs_per_s": round(jobs / took, 1),
        "problems": check(system, dsn, jobs + warm),
    }


async def _pgqueuer_fanout(dsn: str, items: list[list[tuple[int, int]]]) -> float:
    async with pgqueuer_queries(dsn) as (queries, _):
        t0 = time.perf_counter()
        for its in items:
            payloads: list[bytes | None] = [payload(k, i) for k, i in its]
            await queries.enqueue([key_name(k) for k, _ in its], payloads, [0] * len(its))
        return time.perf_counter() - t0


async def _procrastinate_fanout(dsn: str, items: list[list[tuple[int, int]]]) -> float:
    app = procrastinate_app(dsn)
    async with app.open_async():
        task = app.tasks["noop"]
        t0 = time.perf_counter()
        for its in items:
            jobs = [task.configure(lock=key_name(k)).make_new_job(q=k, i=i) for k, i in its]
            await app.job_manager.batch_defer_jobs_async(jobs)
        return time.perf_counter() - t0


def _queuetopia_fanout(system: str, dsn: str, items: list[list[tuple[int, int]]]) -> float:
    import queuetopia

    with queuetopia_app(dsn, system) as topia:
        noop = topia.actions["noop"]
        noop.delay(key_name(0), q=0, i=-1)
        bulk = getattr(topia, "enqueue_many", None)
        request = getattr(queuetopia, "JobRequest", None)
        t0 = time.perf_counter()
        for its in items:
            if bulk is not None and request is not None:
                bulk([request(key_name(k), "noop", {"q": k, "i": i}) for k, i in its])
            else:  # an engine without the many-queue call: one call per queue
                for k, i in its:
                    noop.delay(key_name(k), q=k, i=i)
        return time.perf_counter() - t0


# -- checks ----------------------------------------------------------------------------

ENQUEUED = {
    "pgqueuer": "SELECT entrypoint, payload FROM pgqueuer ORDER BY id",
    "procrastinate": "SELECT lock, (args->>'i')::int FROM procrastinate_jobs ORDER BY id",
}
QUEUETOPIA_ENQUEUED = """
SELECT queue, (params->>'i')::int FROM queuetopia_jobs WHERE scope = %s ORDER BY queue, seq"""


def check(system: str, dsn: str, expected: int) -> list[str]:
    """Every job there, and each key's positions increasing in its order."""
    with psycopg_connect(dsn) as conn:
        if system in ENQUEUED:
            rows = conn.execute(ENQUEUED[system]).fetchall()
        else:
            rows = conn.execute(QUEUETOPIA_ENQUEUED, [SCOPE]).fetchall()
    if system == "pgqueuer":
        rows = [(key, parse_payload(data)[1]) for key, data in rows]
    problems = []
    if len(rows) != expected:
        problems.append(f"expected {expected} jobs, found {len(rows)}")
    last: dict[str, int] = defaultdict(lambda: -(2**31))
    disorder = 0
    for key, i in rows:
        disorder += i <= last[key]
        last[key] = i
    if disorder:
        problems.append(f"{disorder} jobs out of their key's enqueue order")
    return problems
