"""A worker cut off from the database while its action is stuck in one long C call
(scenario 1 of docs/reliability.md, "fail-stop"). The trust deadline's interrupt
cannot land inside `time.sleep(8)`: the worker must end that execution some other
way before the database can let its lease go, and it does by exiting the process.
No second execution of the queue starts while the first is alive (docs/guarantees.md,
rule 2)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from ..helpers import wait_for
from .harness import Chaos, now

LOCK_TTL = 2.0
POLL = 1.0
BLOCK = 8.0  # seconds of one time.sleep call: four leases long
EXIT_LEASE_EXPIRED = 75  # the exit status of a fail-stop (docs/deploying.md)


def test_a_partitioned_worker_stuck_in_a_c_call_exits_before_its_lease_can_go(
    make_chaos: Callable[..., Chaos],
) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=POLL)
    proxy = chaos.proxy()
    a = chaos.worker(concurrency=1, dsn=chaos.proxied_dsn(proxy))
    job = chaos.enqueue("q", 0, first_block=BLOCK, sleep=0.1)
    wait_for(lambda: chaos.executions(job_id=job), timeout=30, what="job 0 to start")
    b = chaos.worker(concurrency=1)
    exited: list[datetime] = []
    # The moment A is seen dead, as close to its death as a blocking wait gets.
    watcher = threading.Thread(target=lambda: (a.popen.wait(), exited.append(now())))
    watcher.start()
    proxy.set_mode("blackhole")
    began = now()
    try:
        watcher.join(timeout=BLOCK + 30)
        assert exited, "the stuck worker did not exit"
        wait_for(lambda: chaos.job(job)["state"] == "done", timeout=60, what="job 0 done by B")
    finally:
        proxy.set_mode("pass")
    chaos.fault("partition", a.pid, began, now())
    chaos.fault("exit", a.pid, exited[0])
    assert a.popen.returncode == EXIT_LEASE_EXPIRED
    critical = [line for line in chaos.log_lines(a) if line["level"] == "critical"]
    assert len(critical) == 1 and "'q'" in critical[0]["message"], chaos.log_lines(a)[-5:]
    assert f"job {job}" in critical[0]["message"]
    [first, second] = chaos.executions(job_id=job)
    assert (first["pid"], first["ended_at"]) == (a.pid, None)  # it never came back
    assert second["pid"] == b.pid and second["prev_error"].startswith("worker lost")
    assert exited[0] < second["started_at"], (exited[0], second["started_at"])
    chaos.assert_drained()
    report = chaos.check(
        "15 partitioned worker stuck in one long C call: fail-stop",
        exit_after_partition_s=round((exited[0] - began).total_seconds(), 2),
        takeover_after_exit_s=round((second["started_at"] - exited[0]).total_seconds(), 3),
    )
    chaos.assert_clean(report)
    # Not even an overlap the partition could explain: the first execution was over
    # (its process gone) before the second began.
    assert report.cut_off_overlaps == 0 and report.overlaps == 0, chaos.explain(report)
    assert report.killed_executions == 1
    assert chaos.stop_all() == [0]
    chaos.assert_no_password_in_logs()
