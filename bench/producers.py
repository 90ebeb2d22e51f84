"""Concurrent producers: `.delay`, one job per transaction, from P processes at once,
each with its own connection (processes, not threads: a thread-per-producer test in
one interpreter would measure its GIL, not the database or the library).

Each producer process opens its connection and enqueues one warm-up job, then all
wait at a barrier; the clock runs from the barrier's release to the last producer's
last commit. Producer p owns its own queues (p, p + P, p + 2P, ...: 100 // P of them,
at least one), so each queue has one producer and its jobs' positions grow with the
queue's order: the check is that every job is there, in that order."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .apps import make_topia
from .context import Context
from .db import queue_name, reset
from .verify import check_enqueued

Metrics = dict[str, Any]
BARRIER_TIMEOUT = 120.0


@dataclass(frozen=True)
class Share:
    """What producer `p` of `producers` sends: `count` jobs over its own keys."""

    p: int
    producers: int
    count: int

    def key(self, m: int) -> int:
        own = max(1, 100 // self.producers)
        return self.p + self.producers * (m % own)


Sender = Callable[[str, str, Share, Any], Any]  # (dsn, scope, share, barrier)


def run_producers(system: str, dsn: str, scope: str, jobs: int, producers: int) -> float:
    """Seconds from the barrier's release until every producer has sent its share."""
    mp = multiprocessing.get_context("spawn")  # no fork of a process holding connections
    barrier = mp.Barrier(producers + 1)
    done: Any = mp.Queue()
    shares = [
        Share(p, producers, jobs // producers + (p < jobs % producers)) for p in range(producers)
    ]
    procs = [mp.Process(target=_child, args=(system, dsn, scope, s, barrier, done)) for s in shares]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(BARRIER_TIMEOUT)
        started = time.perf_counter()
        errors = [done.get(timeout=BARRIER_TIMEOUT) for _ in procs]
        took = time.perf_counter() - started
    except Exception as exc:  # a broken barrier, a producer that never reported
        raise RuntimeError(f"the producers did not finish: {type(exc).__name__} {exc}") from exc
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    failed = [e for e in errors if e]
    if failed:
        raise RuntimeError(f"{len(failed)} producer(s) failed: {failed[0]}")
    return took


def _child(system: str, dsn: str, scope: str, share: Share, barrier: Any, done: Any) -> None:
    try:
        sender(system)(dsn, scope, share, barrier)
        done.put(None)
    except BaseException as exc:
        barrier.abort()
        done.put(f"{type(exc).__name__}: {exc}")


def sender(system: str) -> Sender:
    if system == "queuetopia":
        return _bench_topia
    from bench.peer_enqueue import SENDERS

    return SENDERS[system]


def _bench_topia(dsn: str, scope: str, share: Share, barrier: Any) -> None:
    """The suite's own topia (bench/apps.py): `noop.delay(queue, i=...)` through its
    pool, one job per transaction."""
    with make_topia(dsn, scope) as topia:
        noop = topia.actions["noop"]
        noop.delay(queue_name(share.key(0)), i=-1)  # opens the pool outside the timing
        barrier.wait(BARRIER_TIMEOUT)
        for m in range(share.count):
            noop.delay(queue_name(share.key(m)), i=m)


def enqueue_concurrent(ctx: Context) -> Metrics:
    """The suite's workload: queuetopia alone, P producer processes."""
    jobs, producers = ctx.sizes.producers
    scope = f"producers-{uuid.uuid4().hex[:8]}"
    reset(ctx.db)
    took = run_producers("queuetopia", ctx.db.dsn, scope, jobs, producers)
    with ctx.db.connect() as conn:
        problems = check_enqueued(conn, scope, jobs + producers)
    return {
        "jobs": jobs,
        "producers": producers,
        "seconds": round(took, 3),
        "jobs_per_s": round(jobs / took, 1),
        "problems": problems,
    }
