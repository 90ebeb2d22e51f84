"""Enqueueing (SPEC §2, §3.1): commit order, transactional enqueue, bulk and scheduled
jobs, job options. Producers race on real connections of their own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from queuetopia import Action, Job, JobState, Queuetopia, ValidationError

from .helpers import wait_for

Conn = psycopg.Connection[Any]


@pytest.fixture
def connect(dsn: str) -> Iterator[Callable[..., Conn]]:
    """A factory of producer connections (autocommit off), closed at the end."""
    opened: list[Conn] = []

    def make(**kwargs: Any) -> Conn:
        conn = psycopg.connect(dsn, **kwargs)
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        conn.close()


def rows_in_scope(db: Conn, scope: str) -> tuple[int, int]:
    """(jobs, queues) stored for `scope`."""
    row = db.execute(
        "SELECT (SELECT count(*) FROM queuetopia_jobs WHERE scope = %(s)s),"
        "       (SELECT count(*) FROM queuetopia_queues WHERE scope = %(s)s)",
        {"s": scope},
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def db_clock(db: Conn) -> datetime:
    row = db.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def wait_until_blocked_on_a_lock(db: Conn, conn: Conn) -> None:
    pid = conn.info.backend_pid
    wait_for(
        lambda: db.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'", (pid,)
        ).fetchone(),
        timeout=10,
        what=f"backend {pid} to wait on a lock",
    )


def in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `fn` in a thread; the returned dict gets its 'result' or 'error'."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def enqueue_and_commit(action: Action[..., Any], conn: Conn, queue: str, **params: Any) -> Job:
    job = action.options(connection=conn).delay(queue, **params)
    conn.commit()
    return job


# -- commit order ------------------------------------------------------------------


def test_racing_producers_are_ordered_by_commit(
    topia: Queuetopia, db: Conn, connect: Callable[..., Conn]
) -> None:
    """Given producer B whose transaction began first, and producer A that enqueues
    first and commits only after B has started its own enqueue, B's job joins the
    queue when A commits: it is scheduled after A's and runs after it."""
    ran: list[str] = []

    @topia.action("tag")
    def tag(name: str) -> None:
        ran.append(name)

    conn_a, conn_b = connect(), connect()
    b_began = conn_b.execute("SELECT now()").fetchone()[0]  # B's transaction starts here
    with topia.worker():
        job_a = tag.options(connection=conn_a).delay("q", name="a")
        thread, out = in_background(lambda: enqueue_and_commit(tag, conn_b, "q", name="b"))
        wait_until_blocked_on_a_lock(db, conn_b)  # B waits for A's queue row
        before_a_commits = db_clock(db)
        conn_a.commit()
        thread.join(10)
        assert not thread.is_alive() and "error" not in out, out
        job_b: Job = out["result"]
        wait_for(lambda: len(ran) == 2, what="both jobs to run")
    assert ran == ["a", "b"]
    assert job_b.seq > job_a.seq
    # Scheduled when it joined the queue, after A committed; not when its transaction began.
    assert b_began < before_a_commits < job_b.scheduled_at
    assert job_a.scheduled_at < job_b.scheduled_at


def test_a_transaction_that_began_earlier_but_enqueues_later_goes_after(
    topia: Queuetopia, connect: Callable[..., Conn]
) -> None:
    ran: list[str] = []

    @topia.action("tag")
    def tag(name: str) -> None:
        ran.append(name)

    early = connect()
    early_now = early.execute("SELECT now()").fetchone()[0]  # its transaction starts first
    first = tag.delay("q", name="committed-first")
    second = enqueue_and_commit(tag, early, "q", name="began-first")
    assert first.seq < second.seq
    assert early_now < first.scheduled_at < second.scheduled_at
    with topia.worker():
        wait_for(lambda: len(ran) == 2)
    assert ran == ["committed-first", "began-first"]


def test_an_open_enqueue_does_not_hold_up_other_queues(
    topia: Queuetopia, db: Conn, connect: Callable[..., Conn]
) -> None:
    ran: list[str] = []

    @topia.action("tag")
    def tag(name: str) -> None:
        ran.append(name)

    holder = connect()
    tag.options(connection=holder).delay("q1", name="open")  # q1's row stays locked
    with topia.worker():
        thread, out = in_background(lambda: tag.delay("q2", name="other"))
        thread.join(5)
        assert not thread.is_alive(), "an enqueue on q2 waited for q1's open transaction"
        assert "error" not in out, out
        wait_for(lambda: ran == ["other"], timeout=5, what="q2's job to run")

        # The same queue does wait: that is what orders producers by commit.
        contender = connect()
        thread, out = in_background(lambda: enqueue_and_commit(tag, contender, "q1", name="next"))
        wait_until_blocked_on_a_lock(db, contender)
        holder.commit()
        thread.join(10)
        assert "error" not in out, out
        wait_for(lambda: len(ran) == 3)
    assert ran == ["other", "open", "next"]


# -- transactional enqueue -----------------------------------------------------------


def test_a_rolled_back_enqueue_leaves_nothing_and_never_runs(
    topia: Queuetopia, db: Conn, connect: Callable[..., Conn]
) -> None:
    ran: list[str] = []

    @topia.action("tag")
    def tag(name: str) -> None:
        ran.append(name)

    with topia.worker():
        conn = connect()
        job = tag.options(connection=conn).delay("q", name="rolled-back")
        assert job.state == JobState.PENDING
        assert topia.get_job(job.id) is None  # not visible outside its transaction
        conn.rollback()
        assert rows_in_scope(db, topia.scope) == (0, 0)
        tag.delay("q", name="marker")
        wait_for(lambda: ran == ["marker"], what="the job enqueued after the rollback")
    assert ran == ["marker"]
    assert topia.get_job(job.id) is None


def test_a_committed_enqueue_runs_promptly(topia: Queuetopia, connect: Callable[..., Conn]) -> None:
    started: list[float] = []

    @topia.action("tag")
    def tag(name: str) -> None:
        started.append(time.monotonic())

    with topia.worker():  # poll_interval is 60 s: only the notification can wake it
        conn = connect()
        job = tag.options(connection=conn).delay("q", name="x")
        time.sleep(0.3)
        assert started == [] and topia.get_job(job.id) is None
        committed = time.monotonic()
        conn.commit()
        wait_for(lambda: started, timeout=5, what="the committed job to start")
    assert started[0] - committed < 2.0
    done = wait_for(lambda: (j := topia.get_job(job.id)) and j.state == JobState.DONE and j)
    assert done.attempts == 1


# -- bulk enqueue --------------------------------------------------------------------


class CountingCursor(psycopg.Cursor[Any]):
    """Counts the statements sent on its connection (in `connection.executed`)."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        self.connection.executed.append(str(query))  # type: ignore[attr-defined]
        return super().execute(query, params, **kwargs)


def test_delay_many_keeps_list_order_in_one_statement(
    topia: Queuetopia, connect: Callable[..., Conn]
) -> None:
    ran: list[int] = []

    @topia.action("num")
    def num(n: int) -> None:
        ran.append(n)

    values = [5, 3, 9, 1, 7, 2, 8]
    conn = connect(cursor_factory=CountingCursor)
    conn.executed = []  # type: ignore[attr-defined]
    jobs = num.options(connection=conn).delay_many("q", [{"n": n} for n in values])
    assert len(conn.executed) == 1, conn.executed  # type: ignore[attr-defined]
    conn.commit()
    assert [j.params["n"] for j in jobs] == values
    seqs = [j.seq for j in jobs]
    assert seqs == list(range(seqs[0], seqs[0] + len(values)))
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    with topia.worker(concurrency=3):
        wait_for(lambda: len(ran) == len(values))
    assert ran == values


def test_delay_many_is_all_or_nothing(topia: Queuetopia, db: Conn) -> None:
    @topia.action("num")
    def num(n: int) -> None: ...

    assert num.delay_many("q", []) == []
    with pytest.raises(ValidationError) as caught:
        num.delay_many("q", [{"n": 1}, {"n": 2}, {"n": "three"}])
    assert "n" in caught.value.fields
    assert rows_in_scope(db, topia.scope) == (0, 0)


# -- scheduling ----------------------------------------------------------------------


def test_schedule_with_a_timedelta_counts_from_the_database_clock(
    topia: Queuetopia, db: Conn
) -> None:
    @topia.action("noop")
    def noop() -> None: ...

    before = db_clock(db)
    job = noop.schedule("q", at=timedelta(minutes=5))
    after = db_clock(db)
    assert before + timedelta(minutes=5) <= job.scheduled_at <= after + timedelta(minutes=5)
    stored = topia.get_job(job.id)
    assert stored is not None and stored.scheduled_at == job.scheduled_at


def test_schedule_with_an_aware_datetime_is_stored_exactly(topia: Queuetopia) -> None:
    @topia.action("noop")
    def noop() -> None: ...

    at = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    job = noop.schedule("q", at=at)
    stored = topia.get_job(job.id)
    assert stored is not None
    assert job.scheduled_at == at and stored.scheduled_at == at
    assert stored.scheduled_at.astimezone(UTC) == datetime(2031, 2, 2, 22, 35, 6, 789012, UTC)
    untyped = topia.create_job("q", "noop", {}, scheduled_at=at)
    assert untyped.scheduled_at == at


def test_naive_or_odd_schedule_times_are_refused(topia: Queuetopia, db: Conn) -> None:
    @topia.action("noop")
    def noop() -> None: ...

    naive = datetime(2031, 1, 1, 12, 0)
    with pytest.raises(ValidationError, match="timezone-aware"):
        noop.schedule("q", at=naive)
    with pytest.raises(ValidationError, match="timezone-aware"):
        noop.options(max_attempts=2).schedule("q", at=naive)
    with pytest.raises(ValidationError, match="timezone-aware"):
        topia.create_job("q", "noop", {}, scheduled_at=naive)
    with pytest.raises(ValidationError):
        noop.schedule("q", at=60)  # type: ignore[arg-type]
    assert rows_in_scope(db, topia.scope) == (0, 0)


# -- the untyped form and job options ----------------------------------------------------


def test_create_job_for_an_action_registered_elsewhere_gets_library_defaults(
    topia: Queuetopia,
) -> None:
    job = topia.create_job("q", "somewhere_else", {"to": "h@x", "n": [1, {"k": None}]})
    assert (job.queue, job.action, job.state, job.attempts) == (
        "q",
        "somewhere_else",
        JobState.PENDING,
        0,
    )
    assert job.params == {"to": "h@x", "n": [1, {"k": None}]}
    assert (job.timeout, job.max_attempts, job.max_backoff) == (60.0, 20, 86_400.0)
    stored = topia.get_job(job.id)
    assert stored == job


def test_unset_options_take_the_registered_actions_defaults(topia: Queuetopia) -> None:
    @topia.action("tuned", timeout=5, max_attempts=3, max_backoff=10)
    def tuned(x: int) -> None: ...

    for job in (tuned.delay("q", x=1), topia.create_job("q", "tuned", {"x": 2})):
        assert (job.timeout, job.max_attempts, job.max_backoff) == (5.0, 3, 10.0)
    with pytest.raises(ValidationError):
        topia.create_job("q", "tuned", {"x": "not a number"})  # registered: validated


def test_options_override_the_defaults_and_are_stored(topia: Queuetopia) -> None:
    @topia.action("tuned", timeout=5, max_attempts=3, max_backoff=10)
    def tuned(x: int) -> None: ...

    bound = tuned.options(timeout=2.5, max_attempts=7, max_backoff=timedelta(hours=1))
    jobs = [
        bound.delay("q", x=1),
        bound.schedule("q", at=timedelta(hours=1), x=2),
        *bound.delay_many("q", [{"x": 3}, {"x": 4}]),
    ]
    for job in jobs:
        stored = topia.get_job(job.id)
        assert stored is not None
        assert (stored.timeout, stored.max_attempts, stored.max_backoff) == (2.5, 7, 3600.0)
    untyped = topia.create_job(
        "q",
        "elsewhere",
        {},
        timeout=timedelta(seconds=7),
        max_attempts=4,
        max_backoff=timedelta(minutes=2),
    )
    assert (untyped.timeout, untyped.max_attempts, untyped.max_backoff) == (7.0, 4, 120.0)


@pytest.mark.parametrize(
    "options",
    [{"timeout": 0}, {"timeout": -1}, {"max_attempts": 0}, {"max_backoff": -1.0}],
)
def test_invalid_options_are_refused_before_writing(
    topia: Queuetopia, db: Conn, options: dict[str, Any]
) -> None:
    @topia.action("noop")
    def noop() -> None: ...

    with pytest.raises(ValidationError):
        noop.options(**options).delay("q")
    with pytest.raises(ValidationError):
        topia.create_job("q", "elsewhere", {}, **options)
    assert rows_in_scope(db, topia.scope) == (0, 0)


def test_the_worker_honours_the_stored_max_attempts(topia: Queuetopia) -> None:
    @topia.action("fail", max_attempts=20)
    def fail() -> None:
        raise RuntimeError("boom")

    job = fail.options(max_attempts=1).delay("q")
    with topia.worker():
        failed = wait_for(lambda: (j := topia.get_job(job.id)) and j.state == "failed" and j)
    assert failed.attempts == 1 and "RuntimeError: boom" in (failed.error or "")
