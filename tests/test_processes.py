"""Worker processes (SPEC §3.2, §3.9, §3.10, §6): several `queuetopia worker` processes
share queues without ever overlapping within one; a killed worker's job is recovered
after lock_ttl; SIGTERM drains and releases; a stale claim cannot write.

The subprocesses run tests/apps/proc_app.py, whose action logs every execution to the
`proc_log` table with the database clock."""

from __future__ import annotations

import itertools
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from queuetopia import Job, JobState, Queuetopia
from queuetopia.db import steps
from queuetopia.models import Found, StepItem

from .helpers import claim, record, wait_for
from .helpers import step as run_step
from .procs import LOG_TABLE, Workers, workers

Conn = psycopg.Connection[Any]
LOCK_TTL = 2.0
POLL = 1.0
# Room for process start-up, scheduling on a busy machine and the 0.2 s retry backoff.
SLACK = 3.0


@pytest.fixture
def scope() -> str:
    return f"proc-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def producer(make_topia: Callable[..., Queuetopia], scope: str) -> Queuetopia:
    return make_topia(scope=scope)


@pytest.fixture
def procs(dsn: str, db: Conn, scope: str) -> Iterator[Workers]:
    db.execute(LOG_TABLE)
    with workers(dsn, scope, QT_TEST_LOCK_TTL=str(LOCK_TTL)) as group:
        yield group


def log_rows(db: Conn, scope: str) -> list[dict[str, Any]]:
    with db.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM proc_log WHERE scope = %s ORDER BY started_at, id", (scope,))
        return cur.fetchall()


def lease_rows(db: Conn, scope: str) -> list[tuple[Any, ...]]:
    """The live leases of `scope` (a released lease keeps its row, expired)."""
    return db.execute(
        "SELECT queue, owner FROM queuetopia_leases WHERE scope = %s AND locked_until > now()",
        (scope,),
    ).fetchall()


def step(producer: Queuetopia, queue: str, n: int, **params: float) -> Job:
    """Enqueue the process app's `step` action (not registered in this process)."""
    return producer.create_job(queue, "step", {"n": n, **params})


def job_of(producer: Queuetopia, job: Job) -> Job:
    found = producer.get_job(job.id)
    assert found is not None
    return found


# -- several processes -------------------------------------------------------------------


def test_two_worker_processes_never_overlap_within_a_queue_and_keep_its_order(
    procs: Workers, producer: Queuetopia, db: Conn, scope: str
) -> None:
    queues, per_queue = [f"q{i}" for i in range(10)], 20
    a = procs.start("--concurrency", "3")
    b = procs.start("--concurrency", "3")
    a.wait_ready()
    b.wait_ready()
    for n in range(per_queue):
        for queue in queues:
            step(producer, queue, n, seconds=0.02)
    total = len(queues) * per_queue
    wait_for(
        lambda: len(producer.list_jobs(state="done", limit=total + 1)) == total,
        timeout=90,
        interval=0.2,
        what="every job to be done",
    )
    rows = log_rows(db, scope)
    assert len(rows) == total, "a job ran more than once"
    for queue in queues:
        ran = [r for r in rows if r["queue"] == queue]
        assert [r["n"] for r in ran] == list(range(per_queue)), f"{queue} ran out of order"
        for before, after in itertools.pairwise(ran):
            assert before["ended_at"] is not None
            assert after["started_at"] >= before["ended_at"], f"two jobs of {queue} overlapped"
    assert {r["pid"] for r in rows} == {a.pid, b.pid}, "one process did all the work"
    assert {j.attempts for j in producer.list_jobs(limit=total + 1)} == {1}
    for worker in (a, b):
        worker.send(signal.SIGTERM)
    assert [a.wait(30), b.wait(30)] == [0, 0]
    assert lease_rows(db, scope) == []


def test_a_killed_workers_job_is_finished_by_another_after_lock_ttl(
    procs: Workers, producer: Queuetopia, db: Conn, scope: str
) -> None:
    a = procs.start("--concurrency", "1", "--poll-interval", str(POLL))
    a.wait_ready()
    job = step(producer, "q", 1, first_attempt_seconds=120.0)
    behind = step(producer, "q", 2)
    wait_for(lambda: log_rows(db, scope), timeout=30, what="the first attempt to start")
    b = procs.start("--concurrency", "1", "--poll-interval", str(POLL))
    b.wait_ready()
    assert job_of(producer, job).state == JobState.RUNNING  # a's heartbeat keeps it

    killed_at = time.monotonic()
    a.popen.kill()
    assert a.wait(10) == -signal.SIGKILL
    done = wait_for(
        lambda: (j := job_of(producer, job)).state == JobState.DONE and j,
        timeout=LOCK_TTL + POLL + 30,
        interval=0.05,
        what="the job to be recovered",
    )
    recovered_in = time.monotonic() - killed_at
    assert recovered_in < LOCK_TTL + POLL + SLACK, recovered_in
    assert done.attempts == 2
    assert done.attempted_by is not None and done.attempted_by.endswith(f":{b.pid}")
    rows = log_rows(db, scope)
    first, second = rows[0], rows[1]
    assert (first["attempt"], first["pid"], first["ended_at"]) == (1, a.pid, None)
    assert (second["attempt"], second["pid"]) == (2, b.pid)
    assert "worker lost" in (second["prev_error"] or "")  # what the first attempt recorded
    wait_for(lambda: job_of(producer, behind).state == JobState.DONE, what="the job behind it")


def test_sigterm_finishes_the_running_job_releases_and_exits_0(
    procs: Workers, producer: Queuetopia, db: Conn, scope: str
) -> None:
    worker = procs.start("--concurrency", "2")
    worker.wait_ready()
    running = step(producer, "q", 1, first_attempt_seconds=1.5)
    behind = step(producer, "q", 2)
    wait_for(lambda: log_rows(db, scope), timeout=30, what="the job to start")
    assert lease_rows(db, scope) != []
    worker.send(signal.SIGTERM)
    code = worker.wait(30)
    leases_after_exit = lease_rows(db, scope)
    assert code == 0, worker.log()
    assert leases_after_exit == []
    finished = job_of(producer, running)
    assert finished.state == JobState.DONE and finished.attempts == 1
    [row] = log_rows(db, scope)
    assert row["ended_at"] is not None
    not_started = job_of(producer, behind)
    assert (not_started.state, not_started.attempts) == (JobState.PENDING, 0)
    assert "Traceback" not in worker.log()


# -- fencing (in process) ------------------------------------------------------------------


def take_lease(conn: Conn, scope: str, owner: str, ttl: float = 30.0) -> Any:
    """Take queue "q" and claim its head, as the worker `owner`: the Step."""
    return run_step(conn, scope, StepItem("q", None, claim=True), owner=owner, ttl=ttl)


def expire(conn: Conn, scope: str) -> None:
    conn.execute(
        "UPDATE queuetopia_leases SET locked_until = now() - interval '1 second' WHERE scope = %s",
        (scope,),
    )


def test_a_stale_claim_cannot_record_claim_renew_or_release(topia: Queuetopia, dsn: str) -> None:
    job = topia.create_job("q", "anything", {"x": 1})
    with psycopg.connect(dsn, autocommit=True) as conn:
        first = take_lease(conn, topia.scope, "old-owner")
        old = first.lease
        assert first.found is Found.CLAIMED and first.job is not None and first.job.id == job.id
        running = first.job
        assert running.attempts == 1 and running.lease_id == old.lease_id

        expire(conn, topia.scope)  # paused past lock_ttl: not yet taken over, still fenced
        assert record(conn, scope=topia.scope, lease=old, job=running, state="done") is None
        assert topia.get_job(job.id) == running

        # The new holder sees the lost worker's job as it takes the queue.
        seen = take_lease(conn, topia.scope, "new-owner")
        new = seen.lease
        assert new is not None and new.token > old.token
        stale = record(
            conn, scope=topia.scope, lease=old, job=running, state="done", result={"stale": True}
        )
        assert stale is None
        assert topia.get_job(job.id) == running  # nothing changed, not even updated_at
        stale_claim = claim(conn, topia.scope, old, owner="old-owner")
        assert stale_claim.lease is None and stale_claim.found is None
        renewed = steps.lease_renew(conn, scope=topia.scope, ttl=30.0, leases=[(old, None)])
        assert renewed == (set(), [])
        steps.lease_release(conn, scope=topia.scope, releases=[(old, None, 0)])
        owner = conn.execute(
            "SELECT owner, lease_id, locked_until > now() FROM queuetopia_leases WHERE scope = %s",
            (topia.scope,),
        ).fetchone()
        assert owner == ("new-owner", new.lease_id, True)  # the stale release took nothing

        # It records the lost worker's job as a failed attempt.
        assert seen.found is Found.ZOMBIE and seen.job is not None
        assert seen.job.state == JobState.RUNNING and seen.job.id == job.id
        recovered = record(
            conn,
            scope=topia.scope,
            lease=new,
            job=seen.job,
            state="pending",
            error="worker lost: old-node",
            backoff=0.0,
            owner="new-owner",
        )
        assert recovered is not None
        assert (recovered.state, recovered.attempts) == (JobState.PENDING, 1)
        again = claim(conn, topia.scope, new, owner="new-owner")
        assert again.found is Found.CLAIMED and again.job is not None and again.job.attempts == 2


def test_a_worker_whose_lease_was_taken_over_discards_its_outcome(
    topia: Queuetopia, dsn: str
) -> None:
    release = threading.Event()
    ended = threading.Event()

    @topia.action("held")
    def held() -> str:
        try:
            while not release.is_set():
                time.sleep(0.01)
            return "stale result"
        finally:
            ended.set()

    job = topia.create_job("q", "held", {})
    with psycopg.connect(dsn, autocommit=True) as conn, topia.worker() as worker:
        running = wait_for(
            lambda: (j := topia.get_job(job.id)) and j.state == JobState.RUNNING and j,
            what="the job to run",
        )
        expire(conn, topia.scope)
        thief = take_lease(conn, topia.scope, "thief")
        assert thief.lease is not None
        release.set()
        assert ended.wait(10)
        wait_for(lambda: not worker.running_queues, what="the worker to let the queue go")
        after = topia.get_job(job.id)
        assert after is not None
        assert (after.state, after.result, after.done_at) == (JobState.RUNNING, None, None)
        assert after.lease_id == running.lease_id and after.attempts == 1
        owner = conn.execute(
            "SELECT owner FROM queuetopia_leases WHERE scope = %s", (topia.scope,)
        ).fetchone()
        assert owner == ("thief",)
