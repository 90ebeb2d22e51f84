"""Rate limits (docs/flow-control.md): a limit bounds job starts in the queues it covers,
each on its own budget or on one shared budget, enforced by the database across every
worker process; it never reorders a queue, a queue waiting for its budget says so,
queues it does not cover are left alone, and bad input writes nothing."""

from __future__ import annotations

import itertools
import math
import threading
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuetopia import JobState, QueueStatus, Queuetopia, RateLimit, ValidationError
from queuetopia.db import store
from queuetopia.limits import parse_rate
from queuetopia.models import format_rate

from .helpers import wait_for
from .procs import LOG_TABLE, workers

EPSILON = 1e-6  # seconds: the database's clock is exact to the microsecond


def bucket_holds(starts: list[datetime], count: int, period: float, burst: int) -> None:
    """Replay `starts` through the token bucket the limit promises: `burst` tokens at
    most, `count` per `period` refilled, one taken per start; none may start without."""
    rate, tokens, last = count / period, float(burst), None
    for at in sorted(starts):
        if last is not None:
            tokens = min(burst, tokens + rate * (at - last).total_seconds())
        assert tokens >= 1 - EPSILON * rate, f"a start at {at} had no token ({tokens:.3f})"
        tokens, last = tokens - 1, at


def starts_of(topia: Queuetopia, queue: str | None = None) -> list[datetime]:
    jobs = topia.list_jobs(queue=queue, state="done", limit=10_000)
    return [j.attempted_at for j in jobs if j.attempted_at is not None]


# -- writing rates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("10/s", 10, 1.0),
        ("10 / sec", 10, 1.0),
        ("100/min", 100, 60.0),
        ("100/minutes", 100, 60.0),
        ("5/2h", 5, 7200.0),
        ("1000/d", 1000, 86400.0),
        ("3/0.5s", 3, 0.5),
    ],
)
def test_rates_as_people_write_them(text: str, count: int, period: float) -> None:
    assert parse_rate(text) == (count, period)


@pytest.mark.parametrize(
    "text", ["", "10", "/s", "0/s", "-1/s", "10/fortnight", "10/0s", "10/400d", "1e3/s", "x/s"]
)
def test_a_rate_that_makes_no_sense_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="rate"):
        parse_rate(text)


@given(
    count=st.integers(1, 10**9),
    period=st.one_of(
        st.sampled_from([1.0, 60.0, 3600.0, 86400.0]),
        st.integers(1, 365 * 86400).map(float),
    ),
)
def test_a_rate_reads_back_as_it_is_written(count: int, period: float) -> None:
    assert parse_rate(format_rate(count, period)) == (count, period)
    assert parse_rate((count, timedelta(seconds=period))) == (count, period)


@given(st.text(max_size=30))
def test_any_text_is_a_rate_or_a_clear_refusal(text: str) -> None:
    try:
        count, period = parse_rate(text)
    except ValidationError as exc:
        assert "rate" in str(exc)
    else:
        assert count >= 1 and 0 < period <= 365 * 86400 and math.isfinite(period)


# -- setting, listing, removing ---------------------------------------------------------


def test_limits_are_set_listed_replaced_and_removed(topia: Queuetopia) -> None:
    made = topia.set_limit("hooks", queues="webhooks:*", rate="10/s", burst=5, by="ada")
    assert isinstance(made, RateLimit)
    assert (made.queues, made.count, made.period, made.burst, made.shared) == (
        "webhooks:*",
        10,
        1.0,
        5,
        False,
    )
    assert made.rate == "10/s" and made.set_by == "ada"
    topia.set_limit("partner", queues="partner:*", rate="100/min", shared=True)
    assert [lim.name for lim in topia.list_limits()] == ["hooks", "partner"]
    topia.set_limit("hooks", queues="webhooks:*", rate="2/s")  # replaced
    assert topia.list_limits()[0].count == 2
    assert topia.remove_limit("hooks").name == "hooks"
    assert [lim.name for lim in topia.list_limits()] == ["partner"]
    with pytest.raises(ValidationError, match="no rate limit 'hooks'"):
        topia.remove_limit("hooks")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"queues": "q", "rate": "ten/s"},
        {"queues": "q", "rate": "10/s", "burst": 0},
        {"queues": "q", "rate": "10/s", "burst": True},
        {"queues": "", "rate": "10/s"},
        {"queues": "q\x00", "rate": "10/s"},
        {"queues": "q", "rate": (0, 1.0)},
        {"queues": "q", "rate": (1, math.inf)},
    ],
)
def test_a_bad_limit_is_refused_and_writes_nothing(
    topia: Queuetopia, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        topia.set_limit("bad", **kwargs)
    with pytest.raises(ValidationError):
        topia.set_limit("", queues="q", rate="1/s")
    assert topia.list_limits() == []


# -- enforcement ------------------------------------------------------------------------


def test_each_queue_of_a_glob_has_its_own_budget_and_keeps_its_order(
    topia: Queuetopia,
) -> None:
    topia.set_limit("hooks", queues="hook:*", rate="20/s")
    ran: dict[str, list[int]] = {}
    lock = threading.Lock()

    @topia.action("call")
    def call(q: str, n: int) -> None:
        with lock:
            ran.setdefault(q, []).append(n)

    queues = ["hook:a", "hook:b", "hook:c"]
    for n in range(8):
        for q in queues:
            call.delay(q, q=q, n=n)
    with topia.worker(concurrency=6):
        wait_for(lambda: sum(map(len, ran.values())) == 24, timeout=30)
    assert ran == {q: list(range(8)) for q in queues}
    for q in queues:
        starts = sorted(starts_of(topia, q))
        bucket_holds(starts, 20, 1.0, 1)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
        assert min(gaps) >= 0.05 - EPSILON
    # Each queue on its own budget: together they started faster than one budget allows.
    with pytest.raises(AssertionError, match="had no token"):
        bucket_holds(starts_of(topia), 20, 1.0, 1)


def test_a_shared_limit_holds_across_worker_processes(topia: Queuetopia, dsn: str) -> None:
    """Three worker processes, two queues each, and the six queues share one budget
    of 10/s with a burst of 3: replayed through the bucket, no start lacks a token
    (within one period, and over the whole run), and each queue runs in order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(LOG_TABLE)
    topia.set_limit("partner", queues="partner:*", rate="10/s", burst=3, shared=True)
    queues = [f"partner:{i}" for i in range(6)]
    jobs = [topia.create_job(q, "step", {"n": n}) for n in range(5) for q in queues]
    with workers(dsn, topia.scope) as group:
        # Two queues each: the three processes draw from the one budget at once.
        mine = [["--queue", q] for q in queues]
        procs = [group.start(*mine[2 * i], *mine[2 * i + 1]) for i in range(3)]
        for proc in procs:
            proc.wait_ready()
        wait_for(
            lambda: len(topia.list_jobs(state="done", limit=100)) == len(jobs),
            timeout=60,
            interval=0.1,
        )
    starts = starts_of(topia)
    bucket_holds(starts, 10, 1.0, 3)
    window = sorted(starts)
    for i, first in enumerate(window):  # any one period: at most burst + count
        within = [t for t in window[i:] if (t - first).total_seconds() < 1.0]
        assert len(within) <= 3 + 10
    for q in queues:
        done = topia.list_jobs(queue=q, state="done", limit=100)
        by_start = sorted(done, key=lambda j: j.attempted_at or j.inserted_at)
        assert [j.params["n"] for j in by_start] == list(range(5))
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = conn.execute(
            "SELECT DISTINCT pid FROM proc_log WHERE scope = %s", (topia.scope,)
        ).fetchall()
    assert len(pids) == 3, "the budget was not shared by the three processes"


def test_a_waiting_queue_says_so_and_other_queues_are_not_held(topia: Queuetopia) -> None:
    topia.set_limit("slow", queues="slow", rate="1/h")
    ran: list[str] = []

    @topia.action("work")
    def work(q: str) -> None:
        ran.append(q)

    first, second = work.delay("slow", q="slow"), work.delay("slow", q="slow")
    others = [work.delay("fast", q="fast") for _ in range(5)]
    with topia.worker():
        wait_for(lambda: ran.count("fast") == 5 and ran.count("slow") == 1)
        info = wait_for(lambda: (q := topia.get_queue("slow")) and q.rate_limited_until and q)
        assert info.status == QueueStatus.WAITING and info.rate_limited_by == "slow"
        assert info.head is not None and info.head.id == second.id
        wait = (info.rate_limited_until - info.head.inserted_at).total_seconds()
        assert 3500 < wait < 3700
        fast = topia.get_queue("fast")
        assert fast is not None and fast.rate_limited_until is None
        with topia.connection() as conn:  # the queuetopia_queues_rate_limited gauge
            assert store.queue_blocked_stats(conn, scope=topia.scope)[2] == 1
        # Removing the limit lets the queue go on at once (the workers are woken).
        topia.remove_limit("slow")
        wait_for(lambda: ran.count("slow") == 2, timeout=5)
    assert topia.get_job(first.id).state == JobState.DONE
    assert all(topia.get_job(j.id).state == JobState.DONE for j in others)


def test_a_queue_covered_by_two_limits_takes_from_both(topia: Queuetopia) -> None:
    topia.set_limit("each", queues="api:*", rate="1000/s", burst=1000)
    topia.set_limit("all", queues="api:*", rate="1/h", shared=True)

    @topia.action("work")
    def work() -> None: ...

    jobs = [work.delay(f"api:{i}") for i in range(3)]
    with topia.worker(concurrency=3):
        wait_for(lambda: len(topia.list_jobs(state="done")) == 1)
        wait_for(lambda: sum(bool(q.rate_limited_until) for q in topia.list_queues()) == 2)
    assert len(topia.list_jobs(state="done")) == 1  # the shared hourly budget is spent
    assert {topia.get_job(j.id).attempts for j in jobs} == {0, 1}


# -- budgets pruned ---------------------------------------------------------------------


def buckets(topia: Queuetopia) -> dict[tuple[str, str], float]:
    with topia.connection() as conn:
        rows = conn.execute(
            "SELECT name, key, tokens FROM queuetopia_buckets WHERE scope = %s", (topia.scope,)
        ).fetchall()
    return {(name, key): tokens for name, key, tokens in rows}


def test_budgets_full_again_are_pruned_and_others_kept(topia: Queuetopia) -> None:
    """A bucket full again is the same budget as none: prune deletes it (one row per
    queue a glob ever covered would pile up), and keeps a budget still being refilled."""
    topia.set_limit("hooks", queues="hook:*", rate="100/s")
    topia.set_limit("daily", queues="report", rate="1/d")

    @topia.action("work")
    def work() -> None: ...

    for q in ["hook:a", "hook:b", "report"]:
        work.delay(q)
    with topia.worker(concurrency=3):
        wait_for(lambda: len(topia.list_jobs(state="done")) == 3)
    assert set(buckets(topia)) == {("hooks", "hook:a"), ("hooks", "hook:b"), ("daily", "report")}
    wait_for(lambda: topia.prune() == 0 and set(buckets(topia)) == {("daily", "report")})
    # A budget pruned is drawn from again as a full one, and the spent one still holds.
    second = [work.delay("hook:a"), work.delay("report")]
    with topia.worker(concurrency=3):
        wait_for(lambda: topia.get_job(second[0].id).state == JobState.DONE)
        wait_for(lambda: (q := topia.get_queue("report")) is not None and q.rate_limited_until)
    assert topia.get_job(second[1].id).state == JobState.PENDING


def test_a_prune_racing_the_steps_never_lets_a_start_go_without_a_token(
    topia: Queuetopia,
) -> None:
    """Buckets deleted over and over while a worker draws from them: a step that finds
    its bucket deleted after it made sure of it makes it again under its own lock, so
    replayed through the bucket no start lacks a token."""
    topia.set_limit("hooks", queues="hook:*", rate="40/s", burst=2)

    @topia.action("work")
    def work() -> None: ...

    queues = ["hook:a", "hook:b", "hook:c"]
    for _ in range(30):
        for q in queues:
            work.delay(q)
    stop, pruned = threading.Event(), [0]

    def prune_forever() -> None:
        with topia.connection() as conn:
            while not stop.is_set():
                pruned[0] += store.bucket_prune(conn, scope=topia.scope, batch=100)

    pruner = threading.Thread(target=prune_forever)
    pruner.start()
    try:
        with topia.worker(concurrency=3):
            wait_for(lambda: len(topia.list_jobs(state="done", limit=200)) == 90, timeout=30)
    finally:
        stop.set()
        pruner.join()
    assert pruned[0] > 0, "the prune never found a full budget: the race was not run"
    for q in queues:
        bucket_holds(starts_of(topia, q), 40, 1.0, 2)


def test_a_bucket_deleted_between_the_draws_insert_and_lock_is_made_again(
    topia: Queuetopia, dsn: str
) -> None:
    """The one interleaving a prune can make with a step's draw, forced: the draw finds
    the bucket (so makes none), waits for its lock, and meanwhile the prune deletes it.
    The draw makes it again under its own lock and takes its token from it."""
    topia.set_limit("hooks", queues="hook:*", rate="1/h", burst=2)
    job = topia.create_job("hook:a", "work", {})
    with (
        psycopg.connect(dsn) as pruner,
        psycopg.connect(dsn, autocommit=True) as step,
        psycopg.connect(dsn, autocommit=True) as watcher,
    ):
        pruner.execute(
            "INSERT INTO queuetopia_buckets VALUES (%s, 'hooks', 'hook:a', 2, now())",
            (topia.scope,),
        )
        pruner.commit()
        # A share lock the draw's FOR UPDATE waits for, and its insert does not.
        pruner.execute(
            "SELECT 1 FROM queuetopia_buckets WHERE scope = %s FOR SHARE", (topia.scope,)
        )
        pid = step.info.backend_pid
        held: list[Any] = []
        draw = threading.Thread(
            target=lambda: held.append(
                step.execute(
                    "SELECT queuetopia_rate_take(%s, %s, %s)", (topia.scope, [job.id], ["hook:a"])
                ).fetchone()
            )
        )
        draw.start()
        wait_for(
            lambda: watcher.execute(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()[0]
        )
        pruner.execute("DELETE FROM queuetopia_buckets WHERE scope = %s", (topia.scope,))
        pruner.commit()
        draw.join(timeout=10)
    assert held == [({},)], "the head was held back, or the draw did not end"
    assert buckets(topia) == {("hooks", "hook:a"): 1.0}, "the token was not taken"
