"""Faults between a worker and the database, injected by the proxy (scenario 9): a
half-open partition longer than the lease, connections reset, a slow network."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from ..helpers import wait_for
from .harness import Chaos, now

LOCK_TTL = 2.0
POLL = 1.0


def warnings_of(chaos: Chaos, proc: Any) -> list[str]:
    return [line["message"] for line in chaos.log_lines(proc) if line["level"] == "warning"]


def partition_during_job(chaos: Chaos, scenario: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Worker A (behind the proxy) runs job 0 for 4 x lock_ttl; worker B (direct) waits.
    Partition A from the database until B has taken job 0 over and finished it, heal,
    and let the queue go on. Returns the executions of job 0 by A and by B."""
    proxy = chaos.proxy()
    a = chaos.worker(concurrency=1, dsn=chaos.proxied_dsn(proxy))
    job = chaos.enqueue("q", 0, first_sleep=4 * LOCK_TTL, sleep=0.1)
    wait_for(lambda: chaos.executions(job_id=job), timeout=30, what="job 0 to start")
    b = chaos.worker(concurrency=1)
    proxy.set_mode("blackhole")
    began = now()
    try:
        wait_for(
            lambda: chaos.job(job)["state"] == "done",
            timeout=LOCK_TTL + POLL + 30,
            interval=0.05,
            what="the other worker to take over and finish job 0",
        )
        time.sleep(1.0)
    finally:
        proxy.set_mode("pass")
    healed = now()
    chaos.fault("partition", a.pid, began, healed)
    wait_for(
        lambda: any("lost the lease" in w or "discarded" in w for w in warnings_of(chaos, a)),
        timeout=30,
        what="the partitioned worker to notice",
    )
    for n in range(1, 5):
        chaos.enqueue("q", n)
    chaos.wait_done(5, timeout=60)
    first, second = chaos.executions(job_id=job)[:2]
    assert (first["pid"], second["pid"]) == (a.pid, b.pid)
    done = chaos.job(job)
    assert done["attempts"] == 2 and done["attempted_by"].endswith(f":{b.pid}")
    assert a.popen.poll() is None, "the partitioned worker exited"
    chaos.assert_drained()
    report = chaos.check(
        scenario,
        partition_s=round((healed - began).total_seconds(), 2),
        takeover_after_partition_s=round((second["started_at"] - began).total_seconds(), 2),
        partitioned_job_outcome=first["outcome"],
        partitioned_job_ran_past_takeover_s=round(
            (first["ended_at"] - second["started_at"]).total_seconds(), 3
        ),
    )
    chaos.assert_clean(report)  # the overlap is explained by the partition
    assert report.reexecuted_after_fault == 0 and report.duplicated == 0
    assert chaos.stop_all() == [0, 0]
    chaos.assert_no_password_in_logs()
    return first, second


def test_a_partition_longer_than_the_lease_is_fenced_and_recovered(
    make_chaos: Callable[..., Chaos],
) -> None:
    """The successor takes over after the lease; the partitioned worker's outcome is
    fenced once the network heals; nothing is lost or completed twice."""
    partition_during_job(
        make_chaos(lock_ttl=LOCK_TTL, poll=POLL), "9 partition longer than the lease"
    )


def test_a_partitioned_worker_stops_its_job_when_it_stops_trusting_its_lease(
    make_chaos: Callable[..., Chaos],
) -> None:
    """docs/design.md: a worker stops trusting a lease at 80 % of lock_ttl after the
    last renewal that started, and interrupts the job. The partitioned worker is alive,
    so its job must end before the database lets any other worker start it (SPEC §3
    rules 2 and 9): no overlap at all, however long the partition lasts."""
    first, second = partition_during_job(
        make_chaos(lock_ttl=LOCK_TTL, poll=POLL), "9 partition: job stopped at the trust deadline"
    )
    assert first["outcome"] == "interrupted", first
    assert first["ended_at"] <= second["started_at"], (first["ended_at"], second["started_at"])


def test_connection_resets_and_a_slow_network(make_chaos: Callable[..., Chaos]) -> None:
    """Every connection of a worker is reset (RST) again and again while it drains
    queues, then every packet is delayed by 50 ms each way: it reconnects and goes on,
    and nothing is lost, duplicated or reordered."""
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=POLL)
    proxy = chaos.proxy()
    a = chaos.worker(concurrency=3, dsn=chaos.proxied_dsn(proxy))
    rng = random.Random(9)
    total = chaos.enqueue_grid(
        [f"q{i}" for i in range(6)], 25, lambda q, n: {"sleep": rng.uniform(0.02, 0.1)}
    )
    resets = 0
    for _ in range(6):
        time.sleep(0.5)
        resets += proxy.reset_all()
        chaos.fault("reset", a.pid, now())
    proxy.set_mode("delay", 0.05)
    began = now()
    extra = chaos.enqueue_grid([f"slow{i}" for i in range(3)], 10, lambda q, n: {})
    chaos.wait_done(total + extra, timeout=120)
    proxy.set_mode("pass")
    chaos.fault("delay", a.pid, began, now())
    assert a.popen.poll() is None
    chaos.assert_drained()
    report = chaos.check("9 connection resets and 50 ms latency", connections_reset=resets)
    chaos.assert_clean(report)
    assert resets >= 6
    assert chaos.stop_all() == [0]
    chaos.assert_no_password_in_logs()
