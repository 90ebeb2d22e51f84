"""Claiming ahead (docs/deploying.md): a worker claims jobs beyond its free slots while
its jobs are short, never runs more than its concurrency at once, and records the
jobs it claimed ahead but did not start as not run when it stops."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from queuetopia import Job, JobState, Queuetopia, ValidationError
from queuetopia.models import StepItem
from queuetopia.worker.ahead import Ahead
from queuetopia.worker.dispatcher import HANDOFF
from queuetopia.worker.verdict import not_started

from .helpers import step, take, wait_for


def test_claims_ahead_only_as_many_as_free_slots_within_the_window() -> None:
    many = Ahead(limit=100, concurrency=100)
    assert many.allowed() == 0  # nothing has run yet: no claim ahead
    many.ran(0.05)
    assert many.allowed() == 100  # 200 expected within the window, capped by the limit
    few = Ahead(limit=4, concurrency=4)
    few.ran(1.0)
    assert few.allowed() == 0  # one slot frees every 0.25 s: none claimed ahead
    off = Ahead(limit=0, concurrency=100)
    off.ran(0.01)
    assert off.allowed() == 0


def test_the_mean_follows_the_run_times() -> None:
    ahead = Ahead(limit=10, concurrency=10)
    ahead.ran(0.01)
    for _ in range(200):
        ahead.ran(2.0)  # the jobs got long: the worker stops claiming ahead
    assert ahead.allowed() == 0


def test_by_default_a_worker_claims_ahead_up_to_its_concurrency(topia: Queuetopia) -> None:
    assert topia.worker(concurrency=7).prefetch == 7
    assert topia.worker(concurrency=7, prefetch=0).prefetch == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_bad_prefetch_is_refused(topia: Queuetopia, bad: Any) -> None:
    with pytest.raises(ValidationError, match="prefetch"):
        topia.worker(prefetch=bad)


def test_never_more_running_than_concurrency_while_claiming_ahead(topia: Queuetopia) -> None:
    lock = threading.Lock()
    running, most_running, most_claimed = [0], [0], [0]
    ran: dict[str, list[int]] = {}

    @topia.action("short")
    def short(n: int) -> None:
        with lock:
            running[0] += 1
            most_running[0] = max(most_running[0], running[0])
        with topia.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM queuetopia_jobs WHERE scope = %s AND state = 'running'",
                (topia.scope,),
            ).fetchone()
        time.sleep(0.005)
        with lock:
            most_claimed[0] = max(most_claimed[0], row[0] if row else 0)
            running[0] -= 1
            ran.setdefault(f"q{n % 4}", []).append(n)

    short.delay_many("q0", [{"n": n} for n in range(0, 120, 4)])
    for k in (1, 2, 3):
        short.delay_many(f"q{k}", [{"n": n} for n in range(k, 120, 4)])
    with topia.worker(concurrency=2, prefetch=2):
        wait_for(lambda: sum(len(v) for v in ran.values()) == 120, timeout=30)
    assert most_running[0] <= 2
    assert most_claimed[0] > 2, "no job was ever claimed ahead"
    for k in range(4):
        assert ran[f"q{k}"] == list(range(k, 120, 4))  # each queue in order


def test_prefetch_zero_claims_only_for_free_slots(topia: Queuetopia) -> None:
    most_claimed = [0]
    done = [0]

    @topia.action("short")
    def short() -> None:
        with topia.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM queuetopia_jobs WHERE scope = %s AND state = 'running'",
                (topia.scope,),
            ).fetchone()
        most_claimed[0] = max(most_claimed[0], row[0] if row else 0)
        time.sleep(0.002)
        done[0] += 1

    for k in range(4):
        short.delay_many(f"q{k}", [{}] * 15)
    with topia.worker(concurrency=1, prefetch=0):
        wait_for(lambda: done[0] == 60, timeout=30)
    assert most_claimed[0] == 1


def _claimed_ahead_behind_a_long_job(
    topia: Queuetopia, quick: Any
) -> tuple[threading.Event, threading.Event, Job]:
    """Queue a: five `quick` jobs, then a long one. While the long one runs (every slot
    busy), a `quick` job arrives on queue b: a worker at concurrency 1 and prefetch 1,
    its jobs short so far, claims it ahead. Returns the event set once b is claimed
    ahead, the event that ends the long job, and the long job."""
    claimed_ahead, finish_long = threading.Event(), threading.Event()

    @topia.action("long")
    def long() -> None:
        behind = quick.delay("b", tag="b")
        wait_for(lambda: topia.get_job(behind.id).state is JobState.RUNNING)
        claimed_ahead.set()
        finish_long.wait(20)

    quick.delay_many("a", [{"tag": f"a{i}"} for i in range(5)])
    return claimed_ahead, finish_long, long.delay("a")


def test_a_job_claimed_ahead_is_given_back_uncounted_when_the_worker_stops(
    topia: Queuetopia,
) -> None:
    started: list[str] = []
    attempts: dict[str, int] = {}

    @topia.action("quick")
    def quick(tag: str, job: Job) -> None:
        started.append(tag)
        attempts[tag] = job.attempts
        time.sleep(0.005)

    # Once b is claimed ahead, the worker is asked to stop, and then the long job ends.
    claimed_ahead, stop_asked, last = _claimed_ahead_behind_a_long_job(topia, quick)
    worker = topia.worker(concurrency=1, prefetch=1).start()
    assert claimed_ahead.wait(20)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    wait_for(lambda: worker._dispatcher is not None and worker._dispatcher.stopping)
    stop_asked.set()
    stopper.join(20)
    assert topia.get_job(last.id).state is JobState.DONE
    [b_job] = [j for j in topia.list_jobs(limit=100) if j.queue == "b"]
    assert "b" not in started
    # Claimed, its attempt counted, then given back: as if never claimed.
    assert b_job.state is JobState.PENDING
    assert (b_job.attempts, b_job.attempt_log, b_job.error, b_job.failing_since) == (
        0,
        [],
        None,
        None,
    )
    with topia.worker(concurrency=1):  # it runs at once on the next worker
        wait_for(lambda: topia.get_job(b_job.id).state is JobState.DONE)
    assert started[-1] == "b" and attempts["b"] == 1
    assert topia.get_job(b_job.id).attempts == 1


def test_a_give_back_whose_reply_was_lost_is_recognised_when_retried(topia: Queuetopia) -> None:
    """The retried step finds the job given back (by its attempts, one fewer than the
    claim's) and counts it as recorded, not as someone else's change."""
    job = topia.create_job("q", "quick", {"tag": "x"})
    with psycopg.connect(topia.dsn, autocommit=True) as conn:
        taken = take(conn, topia.scope, "q")
        assert taken.job is not None and taken.job.id == job.id and taken.job.attempts == 1
        item = StepItem("q", taken.lease, taken.floor, taken.seen, not_started(taken.job))
        assert step(conn, topia.scope, item).recorded
        assert step(conn, topia.scope, replace(item, retry=True)).recorded
    stored = topia.get_job(job.id)
    assert stored is not None and (stored.state, stored.attempts) == (JobState.PENDING, 0)


def _quick(topia: Queuetopia) -> Any:
    @topia.action("quick")
    def quick(tag: str) -> None:
        time.sleep(0.005)

    return quick


def _job_of_b(topia: Queuetopia) -> Job:
    [job] = [j for j in topia.list_jobs(limit=100) if j.queue == "b"]
    return job


def test_a_job_claimed_ahead_that_waits_is_handed_to_an_idle_worker(topia: Queuetopia) -> None:
    """Worker a, its jobs short so far, claims a job ahead behind a long one; the long
    one does not end as soon as the recent ones did. The job claimed ahead is given
    back (uncounted) within the handoff delay, and worker b, idle, runs it while the
    long job still runs."""

    claimed_ahead, finish_long, last = _claimed_ahead_behind_a_long_job(topia, _quick(topia))
    with topia.worker(concurrency=1, prefetch=1, name="a"):
        assert claimed_ahead.wait(20)
        try:
            with topia.worker(concurrency=1, prefetch=0, name="b"):
                b_job = _job_of_b(topia)
                done = wait_for(
                    lambda: (j := topia.get_job(b_job.id)) and j.state is JobState.DONE and j,
                    timeout=10,
                    what="the job claimed ahead to run on the idle worker",
                )
                assert topia.get_job(last.id).state is JobState.RUNNING
        finally:
            finish_long.set()
    assert done.attempted_by is not None and done.attempted_by.endswith(":b")
    assert done.attempts == 1


def test_a_worker_does_not_claim_again_the_job_it_handed_off(topia: Queuetopia) -> None:
    """Once it has handed a job off, worker a claims none ahead until a running job
    ends: its own release wakes it too, and if it took the job back it would go back
    and forth (a CI run saw an idle worker lose that race for 2.5 s)."""

    claimed_ahead, finish_long, last = _claimed_ahead_behind_a_long_job(topia, _quick(topia))
    with topia.worker(concurrency=1, prefetch=1, name="a"):
        assert claimed_ahead.wait(20)
        try:
            b_job = _job_of_b(topia)
            state = lambda: topia.get_job(b_job.id).state  # noqa: E731
            wait_for(lambda: state() is JobState.PENDING, timeout=10, what="the handoff")
            # Claimed again, it would wait for the slot for the handoff delay each time.
            seen = set()
            until = time.monotonic() + 4 * HANDOFF
            while time.monotonic() < until:
                seen.add(state())
                time.sleep(0.01)
            assert seen == {JobState.PENDING}
            assert topia.get_job(last.id).state is JobState.RUNNING
        finally:
            finish_long.set()
        wait_for(lambda: state() is JobState.DONE, timeout=10, what="b to run after the long job")


def test_a_handoff_stops_claiming_ahead_until_an_attempt_ends() -> None:
    ahead = Ahead(limit=10, concurrency=10)
    ahead.ran(0.01)
    assert ahead.allowed() == 10
    ahead.handed_off()
    assert ahead.allowed() == 0
    ahead.ran(0.01)
    assert ahead.allowed() == 10


def test_a_job_claimed_ahead_waits_twice_the_recent_run_time_before_it_is_handed_off() -> None:
    ahead = Ahead(limit=10, concurrency=10)
    assert ahead.patience(0.25) == 0.25  # no job has run yet
    ahead.ran(0.05)
    assert ahead.patience(0.25) == 0.25
    ahead.mean = 0.5  # jobs of half a second, that start and end in waves
    assert ahead.patience(0.25) == 1.0
