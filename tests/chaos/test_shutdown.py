"""Scenario 11, graceful shutdown (SPEC §6): on SIGTERM a worker stops claiming, lets
short jobs finish, interrupts a job that outlasts --shutdown-timeout (its attempt
counted but no backoff charged), releases its queues at once and exits 0."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from ..helpers import wait_for
from .harness import Chaos, now

LOCK_TTL = 3.0
IDLE_POLL = 60.0
TAKEOVER_BOUND = 2.0  # seconds: well under lock_ttl, so the queue was really released
# A worker's loop also wakes 6 s after it starts (its first prune); past that, only a
# notification, a due time or the poll wakes an idle worker.
FIRST_PRUNE = 6.0


def leases(chaos: Chaos) -> int:
    return int(
        chaos.db.value(
            "SELECT count(*) FROM queuetopia_leases WHERE scope = %s AND locked_until > now()",
            (chaos.scope,),
        )
    )


def test_sigterm_lets_short_jobs_finish_and_releases_the_queues(
    make_chaos: Callable[..., Chaos],
) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=2.0)
    a = chaos.worker(concurrency=3, name="a")
    total = chaos.enqueue_grid(["q0", "q1", "q2"], 4, lambda q, n: {"sleep": 0.8})
    wait_for(lambda: len(chaos.executions()) == 3, timeout=30, what="three jobs to run")
    a.send(signal.SIGTERM)
    term = now()
    assert a.wait(30) == 0, a.log()
    assert leases(chaos) == 0, "a queue was not released"
    ran = chaos.executions()
    assert len(ran) == 3 and all(e["outcome"] == "ok" for e in ran)
    assert all(e["started_at"] < term for e in ran), "a job started after SIGTERM"
    assert chaos.count("done") == 3 and chaos.count("running") == 0
    assert "Traceback" not in a.log()
    b = chaos.worker(concurrency=3, name="b")
    chaos.wait_done(total, timeout=60)
    chaos.assert_drained()
    report = chaos.check("11 SIGTERM with short jobs")
    chaos.assert_clean(report)
    assert chaos.stop_all() == [0]
    assert b.popen.returncode == 0
    chaos.assert_no_password_in_logs()


def test_a_job_longer_than_the_shutdown_timeout_is_interrupted_and_released_at_once(
    make_chaos: Callable[..., Chaos],
) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=2.0)
    a = chaos.worker(concurrency=1, shutdown_timeout=1.0, name="a")
    job = chaos.enqueue("q", 0, first_sleep=60.0, sleep=0.1)
    wait_for(lambda: chaos.executions(job_id=job), timeout=30, what="the long job to start")
    began = time.monotonic()
    a.send(signal.SIGTERM)
    assert a.wait(30) == 0, a.log()
    stopped_in = time.monotonic() - began
    assert leases(chaos) == 0, "the queue was not released"
    [run] = chaos.executions(job_id=job)
    assert run["outcome"] == "interrupted"
    left = chaos.db.rows(
        "SELECT state, attempts, error, next_attempt_at <= now() AS due FROM queuetopia_jobs"
        " WHERE id = %s",
        (job,),
    )[0]
    assert (left["state"], left["attempts"], left["due"]) == ("pending", 1, True), left
    assert left["error"].startswith("interrupted: shutdown")
    b = chaos.worker(concurrency=1, name="b")
    chaos.wait_done(1, timeout=60)
    runs = chaos.executions(job_id=job)
    assert [r["pid"] for r in runs] == [a.pid, b.pid] and chaos.job(job)["attempts"] == 2
    chaos.assert_drained()
    report = chaos.check(
        "11 SIGTERM with a job past the shutdown timeout", exit_after_sigterm_s=round(stopped_in, 2)
    )
    chaos.assert_clean(report)
    assert stopped_in < 1.0 + 5.0 + 2.0  # the timeout, the interrupt grace, slack
    assert chaos.stop_all() == [0]
    chaos.assert_no_password_in_logs()


def test_an_idle_worker_takes_over_released_queues_at_once(
    make_chaos: Callable[..., Chaos],
) -> None:
    """A rolling restart: worker A gets SIGTERM while it drains two queues, one of short
    jobs and one with a job past the shutdown timeout; worker B is idle and polls only
    every minute. What A hands back (the jobs behind the one it finished; the job it
    interrupted, due at once) must start on B at once, not at B's next poll."""
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=IDLE_POLL)
    a = chaos.worker(concurrency=2, shutdown_timeout=0.5, name="a")
    with chaos.producer.connection() as conn, conn.transaction():
        for n in range(20):  # enough to keep A busy past B's first prune
            chaos.producer.create_job("short", "work", {"n": n, "sleep": 0.5}, connection=conn)
        chaos.producer.create_job(
            "long", "work", {"n": 0, "first_sleep": 60.0, "sleep": 0.1}, connection=conn
        )
    chaos.jobs += 21
    wait_for(lambda: len(chaos.executions()) >= 2, timeout=30, what="both queues to run")
    b = chaos.worker(concurrency=2, name="b")
    time.sleep(FIRST_PRUNE + 0.5)  # B is now asleep until its next poll
    signalled = now()
    a.send(signal.SIGTERM)
    assert a.wait(30) == 0, a.log()
    wait_for(
        lambda: {e["queue"] for e in chaos.executions(pid=b.pid)} == {"short", "long"},
        timeout=TAKEOVER_BOUND + 3.0,
        interval=0.05,
        what="the idle worker to take both queues over",
    )
    took = max(
        min(
            (e["started_at"] - signalled).total_seconds()
            for e in chaos.executions(queue=queue, pid=b.pid)
        )
        for queue in ("short", "long")
    )
    # A hands the short queue back after its running job (0.5 s), the long one after
    # interrupting it at --shutdown-timeout 0.5.
    assert took < 0.5 + TAKEOVER_BOUND, took
    assert chaos.stop_all() == [0]
    report = chaos.check(
        "11 an idle worker takes over what a stopping one hands back",
        expect_all_done=False,
        takeover_after_sigterm_s=round(took, 3),
    )
    chaos.assert_clean(report)
