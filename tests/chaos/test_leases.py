"""Leases under pauses and long jobs. Scenario 3: a worker SIGSTOPped past its lease
is replaced, and once resumed its writes are fenced (SPEC §3 rule 10). Scenario 4: a
slow but healthy job keeps its lease by heartbeats however long it runs, also while
a CPU-bound pure-Python loop holds the GIL (rule 9)."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from ..helpers import wait_for
from .harness import Chaos, now

LOCK_TTL = 2.0
POLL = 1.0
FINISH_SQL = '"state": "done"'  # a piece of a step that records a job done (its JSON batch)


def warnings_of(chaos: Chaos, proc: Any) -> list[str]:
    return [line["message"] for line in chaos.log_lines(proc) if line["level"] == "warning"]


def test_a_worker_stopped_mid_job_past_its_lease_is_replaced_and_fenced(
    make_chaos: Callable[..., Chaos],
) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=POLL)
    a = chaos.worker(concurrency=1)
    job = chaos.enqueue("q", 0, first_sleep=2.0, sleep=0.2)
    behind = chaos.enqueue("q", 1)
    wait_for(lambda: chaos.executions(job_id=job), timeout=30, what="job 0 to start")
    b = chaos.worker(concurrency=1)

    os.kill(a.pid, signal.SIGSTOP)
    began = now()
    try:
        # B takes the queue once A's lease expires and runs job 0 again (attempt 2).
        try:
            wait_for(
                lambda: any(e["pid"] == b.pid for e in chaos.executions(job_id=job)),
                timeout=LOCK_TTL + POLL + 60,
                interval=0.05,
                what="the other worker to take over",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{chaos.snapshot()}") from None
    finally:
        os.kill(a.pid, signal.SIGCONT)
    chaos.fault("stop", a.pid, began, now())
    took_over = (chaos.executions(job_id=job)[-1]["started_at"] - began).total_seconds()

    chaos.wait_done(2, timeout=60)
    wait_for(
        lambda: any("lost the lease" in w or "discarded" in w for w in warnings_of(chaos, a)),
        timeout=30,
        what="the resumed worker to notice it lost its lease",
    )
    done = chaos.job(job)
    assert done["attempted_by"].endswith(f":{b.pid}") and done["attempts"] == 2
    [first, second] = chaos.executions(job_id=job)
    assert (first["pid"], first["attempt"]) == (a.pid, 1)
    assert second["prev_error"].startswith("worker lost")
    # A keeps working: it is not stuck on the queue it lost.
    for n in range(2, 6):
        chaos.enqueue("q", n)
    chaos.wait_done(6, timeout=60)
    assert a.popen.poll() is None and b.popen.poll() is None
    chaos.assert_drained()
    report = chaos.check(
        "3 SIGSTOP past the lease (mid-job)",
        takeover_after_stop_s=round(took_over, 2),
        stopped_worker_first_outcome=first["outcome"],
    )
    chaos.assert_clean(report)
    assert chaos.job(behind)["attempts"] == 1
    assert chaos.stop_all() == [0, 0]
    chaos.assert_no_password_in_logs()


def test_a_stopped_workers_late_completion_is_rejected_by_the_fence(
    make_chaos: Callable[..., Chaos],
) -> None:
    """Deterministic: A's completion of job 0 is held at the proxy while A is stopped
    past its lease; B takes over and completes the job; then the held completion
    reaches the database and must change nothing."""
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=POLL)
    proxy = chaos.proxy()
    a = chaos.worker(concurrency=1, dsn=chaos.proxied_dsn(proxy))
    rule = proxy.add_rule(FINISH_SQL, "hold_statement")
    job = chaos.enqueue("q", 0, sleep=0.1)
    assert rule.fired.wait(30)
    os.kill(a.pid, signal.SIGSTOP)
    began = now()
    try:
        b = chaos.worker(concurrency=1)
        wait_for(lambda: chaos.job(job)["state"] == "done", timeout=LOCK_TTL + POLL + 30)
        recorded = chaos.job(job)
        rule.release(forward=True)  # the stale completion reaches the database now
        time.sleep(0.5)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    chaos.fault("stop", a.pid, began, now())
    wait_for(
        lambda: any(f"outcome of job {job} discarded" in w for w in warnings_of(chaos, a)),
        timeout=30,
        what="the resumed worker to see its completion rejected",
    )
    after = chaos.job(job)
    assert after == recorded, "the stale completion changed the job"
    assert after["attempted_by"].endswith(f":{b.pid}") and after["attempts"] == 2
    chaos.enqueue("q", 1)
    chaos.wait_done(2, timeout=60)
    chaos.assert_drained()
    report = chaos.check("3 SIGSTOP past the lease (completion fenced)")
    chaos.assert_clean(report)
    assert report.reexecuted_after_fault == 1  # at least once: A's run ended, unrecorded
    assert chaos.stop_all() == [0, 0]
    chaos.assert_no_password_in_logs()


def test_a_slow_job_keeps_its_lease_also_while_a_cpu_bound_loop_holds_the_gil(
    make_chaos: Callable[..., Chaos],
) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=POLL)
    a = chaos.worker(concurrency=2)
    seconds = 5 * LOCK_TTL
    slow = chaos.enqueue("slow", 0, sleep=seconds)
    cpu = chaos.enqueue("cpu", 0, cpu=seconds)
    wait_for(lambda: len(chaos.executions()) == 2, timeout=30, what="both jobs to start")
    thief = chaos.worker(concurrency=2)  # ready to take any lease that lapses
    renewals: dict[str, set[Any]] = {"slow": set(), "cpu": set()}
    while chaos.count("done") < 2:
        for row in chaos.db.rows(
            "SELECT queue, locked_until, locked_until > now() AS live FROM queuetopia_leases"
            " WHERE scope = %s",
            (chaos.scope,),
        ):
            assert row["live"], f"the lease on {row['queue']} lapsed"
            renewals[row["queue"]].add(row["locked_until"])
        time.sleep(0.05)
    gaps = {
        queue: max(
            ((b - a).total_seconds() for a, b in itertools.pairwise(sorted(ts))), default=0.0
        )
        for queue, ts in renewals.items()
    }
    for job_id in (slow, cpu):
        done = chaos.job(job_id)
        assert done["attempts"] == 1 and done["attempted_by"].endswith(f":{a.pid}")
        [run] = chaos.executions(job_id=job_id)
        assert run["outcome"] == "ok"
    assert not any("lost the lease" in w for w in warnings_of(chaos, a))
    assert max(gaps.values()) < LOCK_TTL * 0.8, gaps  # within the local trust window
    chaos.assert_drained()
    report = chaos.check(
        "4 slow job 5x lock_ttl, sleeping and CPU-bound",
        job_seconds=seconds,
        max_renewal_gap_s={q: round(g, 2) for q, g in gaps.items()},
    )
    chaos.assert_clean(report)
    assert thief.popen.poll() is None
    assert chaos.stop_all() == [0, 0]
    chaos.assert_no_password_in_logs()
