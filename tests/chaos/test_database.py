"""The database goes away under running workers. Scenario 7: PostgreSQL restarts
(fast, twice) and crash-restarts (immediate) while jobs run. Scenario 8: each kind of
worker connection is terminated with pg_terminate_backend, and a completion commits
but its reply is lost. SPEC §5: workers retry their bookkeeping, log, and resume when
the database is back, losing no job; §4: LISTEN comes back."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from ..helpers import wait_for
from ..procs import WorkerProcess
from .harness import Chaos, now

LOCK_TTL = 3.0
IDLE_POLL = 60.0  # workers here never poll in time: only notifications wake them
WAKE_BOUND = 2.0  # seconds from an enqueue to the start of its job, for an idle worker
# Pieces of the steps (JOB_STEP, prepared by name: each step sends its batch as JSON).
FINISH_SQL = '"state": "done"'  # a step that records a job done
ACQUIRE_SQL = '"in_acquire": true'  # a step that takes a lease and claims its head


def warnings_of(chaos: Chaos, proc: Any) -> list[str]:
    return [line["message"] for line in chaos.log_lines(proc) if line["level"] == "warning"]


def kind_of(backend: dict[str, Any]) -> str:
    """Which of a worker's four connections this is, from the last statement it ran:
    the listener, the heartbeat, the steps (on the event loop) or the housekeeping."""
    query = " ".join((backend["query"] or "").split())
    if query in ("LISTEN queuetopia", "SELECT 1"):
        return "listener"
    if "held_floors" in query:
        return "heartbeat"
    if "queuetopia_job_step" in query:
        return "step"
    if "queuetopia_" in query:
        return "house"
    return "other"


def listening(chaos: Chaos, proc: WorkerProcess) -> bool:
    return any(kind_of(b) == "listener" for b in chaos.backends(proc))


def wake_latencies(chaos: Chaos, procs: list[WorkerProcess], slots: int) -> list[float]:
    """With every worker idle and listening, enqueue one job into each of `slots` new
    queues at once: only the commit notification can wake the workers in time (they
    poll every minute), and all of them must take part. The jobs outlast WAKE_BOUND, so
    a worker woken within the bound finds queues the others could not take yet (with
    1-second jobs, a worker whose first step waited a second for a pooled connection
    found them all taken: a CI run failed so)."""
    for proc in procs:
        wait_for(lambda proc=proc: listening(chaos, proc), timeout=30, what="LISTEN to be back")
    tag = f"wake{time.monotonic_ns()}"
    before = now()
    ids = [chaos.enqueue(f"{tag}-{i}", 0, sleep=WAKE_BOUND + 1.0) for i in range(slots)]
    wait_for(
        lambda: all(chaos.executions(job_id=i) for i in ids),
        timeout=IDLE_POLL / 2,
        interval=0.05,
        what="every idle worker to be woken",
    )
    runs = [chaos.executions(job_id=i)[0] for i in ids]
    assert {r["pid"] for r in runs} == {p.pid for p in procs}, "a worker was not woken"
    latencies = [(r["started_at"] - before).total_seconds() for r in runs]
    # Shown if the test fails: which worker was late, on which queue, is the first clue.
    print(
        "wakes (queue, worker pid, seconds):",
        [(r["queue"], r["pid"], round(s, 3)) for r, s in zip(runs, latencies, strict=True)],
    )
    return latencies


def test_database_restarts_and_a_crash_while_jobs_run(make_chaos: Callable[..., Chaos]) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=IDLE_POLL)
    procs = [chaos.worker(concurrency=3, ready=False) for _ in range(3)]
    for proc in procs:
        proc.wait_ready(timeout=60)
    rng = random.Random(7)
    queues = [f"q{i}" for i in range(9)]
    total = chaos.enqueue_grid(queues, 45, lambda q, n: {"sleep": rng.uniform(0.05, 0.3)})
    away: dict[str, float] = {}
    for i, mode in enumerate(["fast", "fast", "immediate"]):
        time.sleep(1.5)
        began = now()
        away[f"{mode}-{i}"] = round(chaos.server.restart(mode), 2)
        chaos.fault(f"restart-{mode}", None, began, now())
    # Then a crash and an outage longer than the lease: every worker stops trusting its
    # leases and interrupts its jobs; the database lets the leases go meanwhile.
    time.sleep(1.0)
    began = now()
    chaos.server.outage(2 * LOCK_TTL)
    chaos.fault("outage", None, began, now())
    away["outage-immediate"] = round((now() - began).total_seconds(), 2)
    took = chaos.wait_done(total, timeout=180)
    assert all(p.popen.poll() is None for p in procs), "a worker exited"
    chaos.assert_drained()
    chaos.new_producer()  # see test_the_producer_pool_survives_a_database_restart
    latencies = wake_latencies(chaos, procs, slots=9)
    assert max(latencies) < WAKE_BOUND, latencies
    chaos.wait_done(total + 9, timeout=60)
    interrupted = chaos.db.value(
        "SELECT count(*) FROM chaos_exec WHERE scope = %s AND outcome = 'interrupted'",
        (chaos.scope,),
    )
    report = chaos.check(
        "7 database restarts (fast, fast, immediate) and a 6 s outage",
        interrupted_by_the_outage=interrupted,
        seconds_away=away,
        drain_after_restarts_s=round(took, 1),
        wake_latency_max_s=round(max(latencies), 3),
    )
    chaos.assert_clean(report)
    assert chaos.stop_all() == [0, 0, 0]
    chaos.assert_no_password_in_logs()


def test_the_producer_pool_survives_a_database_restart(make_chaos: Callable[..., Chaos]) -> None:
    """SPEC §5: producers raise while the database is down; once it is back, enqueues
    work again. A pooled connection that the restart closed must not be handed out."""
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=1.0)
    chaos.enqueue("q", 0)  # the pool now holds an open connection
    chaos.server.restart("fast")
    chaos.fault("restart-fast", None, now())
    chaos.enqueue("q", 1)  # the database is up again: this must succeed


def test_terminating_each_kind_of_worker_connection(make_chaos: Callable[..., Chaos]) -> None:
    """pg_terminate_backend on the listener, the heartbeat, the steps' connection (while
    a job runs) and the housekeeping's of one worker, while a job runs for 3 x
    lock_ttl: the job keeps its lease and completes once, and the worker is woken by
    NOTIFY again."""
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=IDLE_POLL)
    worker = chaos.worker(concurrency=2)
    long = chaos.enqueue("long", 0, sleep=3 * LOCK_TTL)
    wait_for(lambda: chaos.executions(job_id=long), timeout=30, what="the long job to start")
    wait_for(
        lambda: (
            {"listener", "heartbeat", "step", "house"}
            <= {kind_of(b) for b in chaos.backends(worker)}
        ),
        timeout=30,
        what="every kind of connection to show up",
    )
    terminated: dict[str, int] = {}
    for kind in ("heartbeat", "step", "listener", "house"):
        victims = [b for b in chaos.backends(worker) if kind_of(b) == kind]
        assert victims, kind
        for backend in victims:
            chaos.db.rows("SELECT pg_terminate_backend(%s)", (backend["pid"],))
        chaos.fault("terminate", worker.pid, now(), detail=kind)
        terminated[kind] = len(victims)
        time.sleep(0.5)
    chaos.wait_done(1, timeout=60)
    done = chaos.job(long)
    assert done["attempts"] == 1, done["error"]
    [run] = chaos.executions(job_id=long)
    assert run["outcome"] == "ok"
    assert not any("lost the lease" in w for w in warnings_of(chaos, worker))
    latencies = wake_latencies(chaos, [worker], slots=2)
    assert max(latencies) < WAKE_BOUND, latencies
    chaos.wait_done(3, timeout=30)
    assert worker.popen.poll() is None
    chaos.assert_drained()
    report = chaos.check(
        "8 pg_terminate_backend on each worker connection",
        terminated=terminated,
        wake_latency_max_s=round(max(latencies), 3),
    )
    chaos.assert_clean(report)
    assert chaos.stop_all() == [0]
    chaos.assert_no_password_in_logs()


def test_a_lease_taken_with_its_head_whose_reply_is_lost_is_adopted(
    make_chaos: Callable[..., Chaos],
) -> None:
    """The statement that takes a queue's lease and claims its head commits, but the
    connection breaks before the reply arrives. The worker's retry adopts the lease it
    does not know it holds and runs the claimed job: once, on its first attempt, with
    no wait for the lease to expire and no "worker lost" attempt."""
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=IDLE_POLL)
    ids = [chaos.enqueue("q", n, sleep=0.0) for n in range(3)]  # due before any worker
    proxy = chaos.proxy()
    rule = proxy.add_rule(ACQUIRE_SQL, "hold_reply")
    worker = chaos.worker(concurrency=1, dsn=chaos.proxied_dsn(proxy), ready=False)
    assert rule.fired.wait(30)
    assert chaos.job(ids[0])["state"] == "running"  # the first try committed its claim
    rule.release(forward=False)  # reset the connection: the reply is lost
    chaos.fault("reply_lost", worker.pid, now())
    took = chaos.wait_done(3, timeout=LOCK_TTL * 3)
    for job_id in ids:
        job = chaos.job(job_id)
        assert job["attempts"] == 1 and "worker lost" not in (job["error"] or "")
        assert len(chaos.executions(job_id=job_id)) == 1
    chaos.assert_drained()
    report = chaos.check("8 lease and claim committed, reply lost", drain_s=round(took, 1))
    chaos.assert_clean(report)
    assert chaos.stop_all() == [0]


def test_a_completion_whose_reply_is_lost_counts_once(make_chaos: Callable[..., Chaos]) -> None:
    """The completion of job 0 commits (and claims job 1 in the same statement), but the
    connection breaks before the reply arrives. The worker retries on a new connection,
    sees that its first try committed, and runs job 1 under the claim that try made."""
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=1.0)
    proxy = chaos.proxy()
    worker = chaos.worker(concurrency=1, dsn=chaos.proxied_dsn(proxy))
    rule = proxy.add_rule(FINISH_SQL, "hold_reply")
    ids = [chaos.enqueue("q", n, sleep=0.05) for n in range(4)]
    assert rule.fired.wait(30)
    assert chaos.job(ids[0])["state"] == "done"
    rule.release(forward=False)  # reset the connection: the reply is lost
    chaos.fault("reply_lost", worker.pid, now())
    chaos.wait_done(4, timeout=60)
    for job_id in ids:
        assert chaos.job(job_id)["attempts"] == 1
        assert len(chaos.executions(job_id=job_id)) == 1
    assert not any("lost the lease" in w for w in warnings_of(chaos, worker))
    chaos.assert_drained()
    report = chaos.check("8 completion committed, reply lost")
    chaos.assert_clean(report)
    assert chaos.stop_all() == [0]
    chaos.assert_no_password_in_logs()
