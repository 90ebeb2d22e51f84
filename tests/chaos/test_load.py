"""Scenario 10, exhaustion and bursts: actions that compete for a one-connection pool,
and a burst of 10,000 notifications. No deadlock, nothing lost, and the worker's memory
stays bounded. A server out of connection slots is scenario 20 (test_slots.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psutil

from ..helpers import wait_for
from .harness import Chaos

LOCK_TTL = 3.0
IDLE_POLL = 60.0
WAKE_BOUND = 2.0
MEMORY_BOUND = 64 * 1024 * 1024  # bytes a worker may grow by over a burst


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def test_actions_competing_for_a_one_connection_pool(make_chaos: Callable[..., Chaos]) -> None:
    """8 runner threads, a pool of 1 for the actions: every action holds the pooled
    connection for 0.1 s and enqueues two children through it. The actions queue for
    the pool; the worker's own connections (leases, heartbeat) never do."""
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=1.0)
    worker = chaos.worker(concurrency=8, env={"QT_CHAOS_POOL": "1"})
    parents = 16
    for i in range(parents):
        chaos.enqueue(f"p{i}", 0, action="spawn", children=2, hold=0.1)
    chaos.jobs += parents * 2
    took = chaos.wait_done(parents * 3, timeout=120)
    assert chaos.count("done", "spawn") == parents
    assert all(chaos.job(e["job_id"])["attempts"] == 1 for e in chaos.executions())
    chaos.assert_drained()
    report = chaos.check("10 actions competing for a pool of 1", drain_s=round(took, 1))
    chaos.assert_clean(report)
    assert worker.popen.poll() is None
    assert chaos.stop_all() == [0]
    chaos.assert_no_password_in_logs()


def test_a_burst_of_ten_thousand_notifications(make_chaos: Callable[..., Chaos]) -> None:
    """10,000 notifications for the worker's scope in one commit (and 10,000 for another
    scope), then 2,000 jobs enqueued one by one from 4 threads, each with its own
    notification: the listener keeps up, the worker stays reactive, memory bounded."""
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=IDLE_POLL)
    worker = chaos.worker(concurrency=4)
    wait_for(lambda: rss(worker.pid) > 0, what="the worker")
    time.sleep(1.0)
    before = rss(worker.pid)
    chaos.db.rows(
        "SELECT count(pg_notify('queuetopia', json_build_array(s.scope, 'burst' || i)::text))"
        "  FROM generate_series(1, 10000) AS i,"
        "       (VALUES (%s::text), ('someone-else')) AS s(scope)",
        (chaos.scope,),
    )
    sent = time.monotonic()
    job = chaos.enqueue("after-burst", 0)
    wait_for(lambda: chaos.executions(job_id=job), timeout=30, interval=0.02, what="the job")
    burst_latency = time.monotonic() - sent

    def produce(k: int) -> None:
        for n in range(50):
            for q in range(10):
                chaos.producer.create_job(f"t{k}-q{q}", "work", {"n": n})

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    chaos.jobs += 2000
    chaos.wait_done(2001, timeout=180)
    took = time.monotonic() - began
    grown = rss(worker.pid) - before
    chaos.assert_drained()
    report = chaos.check(
        "10 burst of 10,000 notifications, then 2,000 enqueues",
        job_after_burst_latency_s=round(burst_latency, 3),
        enqueue_and_drain_2000_s=round(took, 1),
        rss_growth_mb=round(grown / 2**20, 1),
    )
    chaos.assert_clean(report)
    assert burst_latency < WAKE_BOUND, burst_latency
    assert grown < MEMORY_BOUND, grown
    assert chaos.stop_all() == [0]
    chaos.assert_no_password_in_logs()
