"""Scenario 1, exclusivity under contention: several worker processes race for the
same queues, with random short jobs, and no fault at all. Every job runs once, each
queue in order, never two of one queue at once (SPEC §3 rules 1 and 2)."""

from __future__ import annotations

import random
from collections.abc import Callable

from .conftest import Sizes
from .harness import Chaos


def test_exclusivity_under_contention(make_chaos: Callable[..., Chaos], sizes: Sizes) -> None:
    chaos = make_chaos(lock_ttl=3.0, poll=1.0)
    workers = int(sizes.pick(4, 6))
    queues = [f"q{i}" for i in range(int(sizes.pick(20, 30)))]
    per_queue = int(sizes.pick(20, 50))
    rng = random.Random(1)
    procs = [chaos.worker(concurrency=3, ready=False) for _ in range(workers)]
    for proc in procs:
        proc.wait_ready(timeout=60)
    total = chaos.enqueue_grid(
        queues, per_queue, lambda q, n: {"sleep": rng.choice([0.0, 0.0, 0.005, 0.02, 0.05])}
    )
    took = chaos.wait_done(total, timeout=float(sizes.pick(180, 900)))
    chaos.assert_drained()
    report = chaos.check(
        "1 exclusivity under contention",
        workers=workers,
        queues=len(queues),
        per_queue=per_queue,
        drain_s=round(took, 1),
    )
    chaos.assert_clean(report)
    assert report.executions == total  # no fault: every job ran exactly once
    pids = {row["pid"] for row in chaos.executions()}
    assert len(pids) == workers, "some worker took no part: there was no contention"
    assert chaos.stop_all() == [0] * workers
    assert (
        chaos.db.value(
            "SELECT count(*) FROM queuetopia_leases WHERE scope = %s AND locked_until > now()",
            (chaos.scope,),
        )
        == 0
    )
    chaos.assert_no_password_in_logs()
