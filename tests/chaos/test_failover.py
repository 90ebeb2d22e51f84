"""Failover (scenario 12): the primary crashes mid-run (`pg_ctl stop -m immediate`) and
its streaming standby is promoted, while a producer enqueues and workers run jobs, all
on a multi-host DSN with `target_session_attrs=read-write` (docs/deploying.md).

* Synchronous replication: no acknowledged enqueue and no recorded completion is lost.
  The promoted standby inherited `synchronous_standby_names`, so each of its commits
  waits for a standby it does not have: the producer's enqueues fail within
  `commit_timeout` instead of hanging, workers log and retry, and once the operator
  clears the setting everything moves on.
* Asynchronous replication, cut one second before the crash: the commits of that second
  are lost (the figures say how many), order and exclusion hold, and each lost
  completion runs again once.

The execution log is written to the suite's main chaos server (it must survive the
failover it describes) and copied to the promoted server before the checks.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
import pytest

from queuetopia import DatabaseUnavailable, Queuetopia, ValidationError
from queuetopia.db.connections import Database
from queuetopia.models import Finish, Step, StepItem, Verdict
from queuetopia.worker.stepper import Stepper

from ..helpers import step, take, wait_for
from .failover import FailoverPair, chaos_on, copy_log
from .harness import OVERLAPS, RESULTS, Chaos, Report, _write_results, now
from .server import ChaosServer

LOCK_TTL = 3.0
COMMIT_TIMEOUT = 2.0
QUEUES = [f"q{i}" for i in range(6)]

# Executions after the failover that started before an earlier position of their queue
# had started after the failover: the queue ran out of order once it came back.
ORDER_AFTER = """
SELECT count(*) FROM (
    SELECT n, lag(n) OVER (PARTITION BY queue ORDER BY started_at, exec_id) AS before
      FROM chaos_exec WHERE scope = %(scope)s AND started_at > %(at)s) s
 WHERE n < before
"""

# Recorded completions and queue positions out of enqueue order.
ORDER_RECORDED = """
SELECT (SELECT count(*) FROM (
           SELECT seq, lag(seq) OVER (PARTITION BY queue ORDER BY done_at, id) AS before
             FROM queuetopia_jobs WHERE scope = %(scope)s AND state = 'done') s
         WHERE seq < before)
     + (SELECT count(*) FROM (
           SELECT (params->>'n')::int AS n,
                  lag((params->>'n')::int) OVER (PARTITION BY queue ORDER BY seq) AS before
             FROM queuetopia_jobs WHERE scope = %(scope)s) s
         WHERE n < before)
"""


@dataclass
class Producer:
    """Enqueues into QUEUES round robin from a thread of its own, recording each
    acknowledged job and each failed call with how long it took."""

    topia: Queuetopia
    acked: dict[int, tuple[str, int]] = field(default_factory=dict)
    failed: list[tuple[str, int, float, str, float]] = field(default_factory=list)
    longest_s: float = 0.0
    stopped: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, rng: random.Random) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(rng,), daemon=True)
        thread.start()
        return thread

    def _run(self, rng: random.Random) -> None:
        n = 0
        while not self.stopped.is_set():
            queue = QUEUES[n % len(QUEUES)]
            began = time.monotonic()
            try:
                job = self.topia.create_job(
                    queue, "work", {"n": n, "sleep": rng.uniform(0.02, 0.15)}
                )
                with self.lock:
                    self.acked[job.id] = (queue, n)
            except DatabaseUnavailable as exc:
                with self.lock:
                    self.failed.append((queue, n, time.monotonic() - began, str(exc), began))
                time.sleep(0.1)
            self.longest_s = max(self.longest_s, time.monotonic() - began)
            n += 1
            time.sleep(0.01)


def _chaos(pair: FailoverPair, log: ChaosServer, name: str) -> Chaos:
    return chaos_on(pair, log.dsn, name, lock_ttl=LOCK_TTL, commit_timeout=COMMIT_TIMEOUT)


def _done(chaos: Chaos) -> dict[int, int]:
    """The done jobs of the scope on the primary right now, with their attempts."""
    with psycopg.connect(chaos.server.pair.primary.dsn, autocommit=True) as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            "SELECT id, attempts FROM queuetopia_jobs WHERE scope = %s AND state = 'done'",
            (chaos.scope,),
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def _copy_log(chaos: Chaos, log: ChaosServer) -> None:
    copy_log(chaos.scope, log.dsn, chaos.server.dsn)


def _run(chaos: Chaos, pair: FailoverPair, *, cut_replication: bool) -> dict[str, Any]:
    """Workers and a producer on the pair; crash the primary mid-run, promote the
    standby after a detection delay longer than the lease (every worker stops trusting
    its leases meanwhile). Returns what the test checks."""
    workers = [chaos.worker(concurrency=3) for _ in range(2)]
    producer = Producer(chaos.producer)
    thread = producer.start(random.Random(12))
    wait_for(lambda: len(_done(chaos)) >= 30, timeout=60, what="jobs to run before the crash")
    if cut_replication:
        assert pair.replication is not None
        pair.replication.set_mode("blackhole")  # the standby falls behind from now on
        time.sleep(1.0)
    done_before = _done(chaos)
    with producer.lock:
        acked_before = dict(producer.acked)
    pair.kill_primary()
    crashed = now()
    if pair.replication is not None:
        pair.replication.set_mode("reset")  # the dead primary's connections are gone
    time.sleep(LOCK_TTL * 1.2)  # the time a failover manager takes to decide
    promote_s = pair.promote()
    promoted = now()
    promoted_monotonic = time.monotonic()
    return {
        "workers": workers,
        "producer": producer,
        "thread": thread,
        "done_before": done_before,
        "acked_before": acked_before,
        "crashed": crashed,
        "promoted": promoted,
        "promoted_monotonic": promoted_monotonic,
        "promote_s": promote_s,
    }


def _finish(chaos: Chaos, run: dict[str, Any], log: ChaosServer, scenario: str) -> Report:
    """Stop the producer, drain, copy the log and measure. (The fault is logged only
    now: on a promoted standby that hangs commits, the log's own insert would hang.)"""
    chaos.fault(
        "failover", None, run["crashed"], run["promoted"], detail=f"promote {run['promote_s']:.2f}s"
    )
    producer: Producer = run["producer"]
    producer.stopped.set()
    run["thread"].join(timeout=30)
    with producer.lock:
        acked = dict(producer.acked)
    chaos.jobs = chaos.count()
    chaos.wait_done(chaos.count(), timeout=120)
    assert all(w.popen.poll() is None for w in run["workers"]), "a worker exited"
    # After a failover the promoted server may hold a lease whose release it never
    # received (a release does not wait for its WAL, nor for a standby) on a queue whose
    # last completion it did receive: nothing is due there, so nobody takes that lease
    # over, and it stays, expired. Harmless: the next job of that queue takes it over.
    # Only live leases must be gone.
    chaos.assert_drained()
    _copy_log(chaos, log)
    p = {"scope": chaos.scope, "at": run["promoted"]}
    present = {
        r["id"]: r
        for r in chaos.db.rows(
            "SELECT id, attempts, state FROM queuetopia_jobs WHERE scope = %(scope)s", p
        )
    }
    lost_enqueues = [i for i in acked if i not in present]
    lost_completions = [
        i
        for i, attempts in run["done_before"].items()
        if i in present and present[i]["attempts"] != attempts
    ]
    reruns = {
        i: len(
            [
                x
                for x in chaos.executions(job_id=i)
                if x["started_at"] > run["promoted"] and x["outcome"] == "ok"
            ]
        )
        for i in lost_completions
    }
    vanished = [i for i in run["done_before"] if i not in present]  # lost with their enqueue
    overlaps = chaos.db.rows(OVERLAPS, p)
    report = Report(
        scenario=scenario,
        jobs=len(present),
        executions=int(
            chaos.db.value("SELECT count(*) FROM chaos_exec WHERE scope = %s", (chaos.scope,))
        ),
        faults={"failover": 1},
        duration_s=round(time.monotonic() - chaos.started, 1),
        lost=len(lost_enqueues) + len(lost_completions),
        order_violations=int(chaos.db.value(ORDER_AFTER, p))
        + int(chaos.db.value(ORDER_RECORDED, p)),
        overlaps=len(overlaps),
        reexecuted_after_fault=len(lost_completions),
        idle_in_transaction_seen=chaos.watch.seen,
        extra={
            "acknowledged_enqueues": len(acked),
            "acknowledged_before_crash": len(run["acked_before"]),
            "lost_enqueues": len(lost_enqueues),
            "done_before_crash": len(run["done_before"]),
            "lost_completions": len(lost_completions),
            "lost_enqueues_of_jobs_done": len(vanished),
            "reruns_of_lost_completions": sorted(set(reruns.values())),
            "failed_enqueues": len(producer.failed),
            "failed_enqueues_that_exist": sum(
                1
                for q, n, *_ in producer.failed
                if chaos.db.value(
                    "SELECT count(*) FROM queuetopia_jobs WHERE scope = %s AND queue = %s"
                    " AND (params->>'n')::int = %s",
                    (chaos.scope, q, n),
                )
            ),
            "longest_enqueue_s": round(producer.longest_s, 2),
            "promote_s": round(run["promote_s"], 2),
        },
    )
    RESULTS.append(report)
    _write_results()
    return report


def test_failover_with_synchronous_replication_loses_nothing(
    sync_pair: FailoverPair, log_server: ChaosServer
) -> None:
    chaos = _chaos(sync_pair, log_server, "failover-sync")
    try:
        run = _run(chaos, sync_pair, cut_replication=False)
        producer: Producer = run["producer"]
        # The promoted standby waits for a synchronous standby of its own: every
        # commit hangs. Producers get errors within the bound, workers log and retry.
        wait_for(
            lambda: any(
                "commit_timeout" in f[3] and f[4] > run["promoted_monotonic"]
                for f in producer.failed
            ),
            timeout=60,
            what="an enqueue to fail on the hung commit",
        )
        hung_at = time.monotonic()
        for proc in run["workers"]:
            wait_for(
                lambda proc=proc: any("commit_timeout" in line for line in proc.log().splitlines()),
                timeout=30,
                what=f"worker {proc.pid} to log the hung commit",
            )
        hang_s = time.monotonic() - hung_at
        sync_pair.release_sync_wait()
        released = time.monotonic()
        count = len(producer.acked)
        wait_for(
            lambda: len(producer.acked) > count + 10, timeout=30, what="enqueues to work again"
        )
        report = _finish(chaos, run, log_server, "12a failover, synchronous replication")
        report.extra["hung_commits_logged_by_workers_s"] = round(hang_s, 1)
        report.extra["resumed_after_release_s"] = round(time.monotonic() - released, 1)
        _write_results()
        assert report.violations() == {}, (report, chaos.explain(report))
        assert report.extra["lost_enqueues"] == 0 and report.extra["lost_completions"] == 0
        # Never a silent hang: a hung commit fails after the bound and a little more
        # (an enqueue that began before the promotion first waited for a connection);
        # no enqueue took longer than the pool's own wait for a connection (10 s).
        hung = [
            f[2]
            for f in producer.failed
            if "commit_timeout" in f[3] and f[4] > run["promoted_monotonic"]
        ]
        assert max(hung) < COMMIT_TIMEOUT + 3, hung
        assert producer.longest_s < 10 + 5, producer.longest_s
        report.extra["hung_enqueue_failed_after_s"] = round(max(hung), 2)
        _write_results()
        assert chaos.stop_all() == [0, 0]
        chaos.assert_no_password_in_logs()
    finally:
        chaos.close()


def test_failover_with_asynchronous_replication_loses_the_last_commits(
    async_pair: FailoverPair, log_server: ChaosServer
) -> None:
    chaos = _chaos(async_pair, log_server, "failover-async")
    try:
        run = _run(chaos, async_pair, cut_replication=True)
        report = _finish(
            chaos, run, log_server, "12b failover, asynchronous replication 1 s behind"
        )
        extra = report.extra
        # What is lost is what the standby had not received: here, the last second.
        assert extra["lost_enqueues"] + extra["lost_completions"] > 0, extra
        # Order and exclusion hold; each lost completion ran again, once.
        assert report.order_violations == 0 and report.overlaps == 0, chaos.explain(report)
        assert extra["reruns_of_lost_completions"] in ([], [1]), extra
        assert report.idle_in_transaction_seen == 0
        assert chaos.stop_all() == [0, 0]
        chaos.assert_no_password_in_logs()
    finally:
        chaos.close()


def test_commit_timeout_is_validated() -> None:
    with pytest.raises(ValidationError, match="commit_timeout"):
        Queuetopia(dsn="postgresql://x@127.0.0.1/x", commit_timeout=0)
    assert Queuetopia(dsn="postgresql://x@127.0.0.1/x", commit_timeout=None).commit_timeout is None


def test_a_retried_step_is_acted_on_only_once_the_standby_has_it(
    sync_pair: FailoverPair,
) -> None:
    """docs/design.md, "A retry waits for the standby": a step's commit whose wait for
    the synchronous standby is cut short (here by commit_timeout, the standby cut off)
    is visible on the primary; its retry finds the next job claimed under our lease,
    and must not hand it over until the standby has it too."""
    scope = f"barrier-{random.randrange(1 << 30)}"
    dsn = sync_pair.primary.dsn
    topia = Queuetopia(dsn=dsn, scope=scope, commit_timeout=COMMIT_TIMEOUT)
    first, second = (topia.create_job("q", "a", {"n": n}) for n in (1, 2))
    topia.close()
    database = Database(dsn, commit_timeout=COMMIT_TIMEOUT)
    with database.connect_bounded() as conn:
        taken = take(conn, scope, "q")
        assert taken.job is not None and taken.job.id == first.id
        assert sync_pair.replication is not None
        sync_pair.replication.set_mode("blackhole")  # the standby hears nothing more
        finish = Finish(taken.job, Verdict.DONE)
        item = StepItem("q", taken.lease, taken.floor, taken.seen, finish, claim=True)
        with pytest.raises(DatabaseUnavailable, match="commit_timeout"):
            step(conn, scope, item)
    # The first try committed here, though the standby never had it.
    assert _state(dsn, second.id) == "running"
    assert _state(sync_pair.standby.dsn, second.id) == "pending"

    retried = replace(item, retry=True, zombies=True)
    assert _retry(database, scope, retried) is None  # the barrier could not commit
    sync_pair.replication.set_mode("pass")
    found = _retry(database, scope, retried)
    assert found is not None and found.job is not None and found.job.id == second.id
    wait_for(lambda: _state(sync_pair.standby.dsn, second.id) == "running", 10)


def _retry(database: Database, scope: str, item: StepItem) -> Step | None:
    """One step through a worker's stepper, as it retries after a lost reply; None
    when it failed (a stopped worker's stepper does not try again)."""

    async def run() -> Step | None:
        stepper = Stepper(
            database, scope=scope, owner="test-owner", node="test-node", ttl=3600.0,
            stopped=lambda: True,
        )  # fmt: skip
        got: asyncio.Future[Step | None] = asyncio.get_running_loop().create_future()
        stepper.submit(item, lambda _, found: got.set_result(found))
        try:
            return await asyncio.wait_for(got, 30)
        finally:
            await stepper.close()

    return asyncio.run(run())


def _state(dsn: str, job_id: int) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT state FROM queuetopia_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])
