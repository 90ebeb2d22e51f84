"""A stale worker resumed inside its successor's backoff window (docs/reliability.md):
SIGSTOP past lock_ttl, the successor records the attempt as "worker lost" and waits
out the backoff, then SIGCONT. The stale worker's outcome is rejected by the fence,
and it must see it as discarded: no "it committed, the reply was lost" mistake, and
no second run of the on_failure hooks for that attempt. Hooks run once per attempt."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from ..helpers import wait_for
from .harness import Chaos, now

LOCK_TTL = 2.0
POLL = 1.0
BACKOFF = 60.0  # the successor's backoff window: far longer than the test


def warnings_of(chaos: Chaos, proc: Any) -> list[str]:
    return [line["message"] for line in chaos.log_lines(proc) if line["level"] == "warning"]


def hook_calls(chaos: Chaos, job_id: int) -> list[dict[str, Any]]:
    return chaos.db.rows(
        "SELECT attempt, pid FROM chaos_hook WHERE scope = %s AND job_id = %s ORDER BY id",
        (chaos.scope, job_id),
    )


def test_a_resumed_stale_worker_discards_its_outcome_and_runs_no_hook_again(
    make_chaos: Callable[..., Chaos],
) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=POLL)
    a = chaos.worker(concurrency=1)
    job = chaos.enqueue("q", 0, action="flaky", sleep=30.0, fail_attempts=1, backoff=BACKOFF)
    wait_for(lambda: chaos.executions(job_id=job), timeout=30, what="attempt 1 to start")
    b = chaos.worker(concurrency=1)
    os.kill(a.pid, signal.SIGSTOP)
    began = now()
    try:
        # B takes the queue, records attempt 1 as "worker lost" (its hook runs once)
        # and leaves the job to its backoff.
        try:
            wait_for(
                lambda: hook_calls(chaos, job),
                timeout=LOCK_TTL + POLL + 60,
                interval=0.05,
                what="the successor to record the lost attempt",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{chaos.snapshot()}") from None
        recorded = chaos.job(job)
        assert recorded["state"] == "pending" and recorded["attempts"] == 1
        assert recorded["error"].startswith("worker lost")
    finally:
        os.kill(a.pid, signal.SIGCONT)
    chaos.fault("stop", a.pid, began, now())
    # A's attempt ends (interrupted or failed), its write is fenced off, and it must
    # say so; a second hook call for attempt 1 is the bug this test is about.
    wait_for(
        lambda: (
            any(f"outcome of job {job} discarded" in w for w in warnings_of(chaos, a))
            or len(hook_calls(chaos, job)) > 1
        ),
        timeout=30,
        what="the resumed worker to settle its outcome",
    )
    assert hook_calls(chaos, job) == [{"attempt": 1, "pid": b.pid}]
    assert chaos.job(job) == recorded, "the stale worker changed the job"
    # The job goes on: due now, attempt 2 succeeds.
    chaos.producer.retry_job(job)
    chaos.wait_done(1, timeout=60)
    done = chaos.job(job)
    assert done["attempts"] == 2
    assert hook_calls(chaos, job) == [{"attempt": 1, "pid": b.pid}]
    assert not any(f"outcome of job {job} discarded" in w for w in warnings_of(chaos, b))
    chaos.assert_drained()
    report = chaos.check("17 stale worker resumed in the backoff window: hooks once")
    chaos.assert_clean(report)
    assert a.popen.poll() is None and b.popen.poll() is None
    assert chaos.stop_all() == [0, 0]
    chaos.assert_no_password_in_logs()
