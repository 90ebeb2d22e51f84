"""Reactivity (SPEC §4): notifications wake idle workers at once, and a worker looks
for work again as soon as a job ends. Every worker here polls only every 60 s, so
anything that happens within a second was not a poll."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from queuetopia import Job, Queuetopia, Worker

from .helpers import wait_for

LATENCY_BOUND = 1.0  # seconds from commit to the action's start (SPEC: "milliseconds")


def wait_idle(worker: Worker) -> None:
    """Wait until the worker holds no queue; then give it a moment to go to sleep."""
    wait_for(lambda: not worker.running_queues, what="the worker to go idle")
    time.sleep(0.2)


def make_due_silently(db: psycopg.Connection[Any], topia: Queuetopia, job: Job) -> None:
    """Make a future job due by hand, without the notification an enqueue sends."""
    db.execute("UPDATE queuetopia_jobs SET scheduled_at = now() WHERE id = %s", (job.id,))
    db.execute(
        "UPDATE queuetopia_queues SET ready_at = now() WHERE scope = %s AND queue = %s",
        (topia.scope, job.queue),
    )


def test_an_idle_worker_is_woken_by_the_commit_notification(topia: Queuetopia) -> None:
    started: dict[str, float] = {}

    @topia.action("mark")
    def mark(key: str) -> None:
        started[key] = time.monotonic()

    latencies = []
    with topia.worker(concurrency=2) as worker:
        mark.delay("warm-up", key="warm-up")
        wait_for(lambda: "warm-up" in started, timeout=10, what="the warm-up job")
        # The same queue again and again, then queues the worker has never seen.
        for key, queue in [(f"same-{i}", "q") for i in range(3)] + [
            (f"new-{i}", f"fresh-{i}") for i in range(3)
        ]:
            wait_idle(worker)
            before = time.monotonic()
            mark.delay(queue, key=key)
            wait_for(lambda key=key: key in started, timeout=10, what=f"job {key}")
            latencies.append(started[key] - before)
    assert max(latencies) < LATENCY_BOUND, latencies


@pytest.mark.parametrize("ending", ["success", "failure", "timeout"])
def test_the_worker_takes_the_next_queue_as_soon_as_a_job_ends(
    topia: Queuetopia, ending: str
) -> None:
    """Given one slot and two due queues, the second queue's job starts right after
    the first one ends, however it ended."""
    events: dict[str, float] = {}

    @topia.action("first", timeout=0.3, max_attempts=1)
    def first() -> None:
        try:
            if ending == "timeout":
                while True:
                    time.sleep(0.01)
            time.sleep(0.2)
            if ending == "failure":
                raise RuntimeError("boom")
        finally:
            events["first-ended"] = time.monotonic()

    @topia.action("second")
    def second() -> None:
        events["second-started"] = time.monotonic()

    first.delay("a")
    second.delay("b")
    with topia.worker(concurrency=1):
        wait_for(lambda: "second-started" in events, timeout=10, what="the second queue's job")
    assert events["second-started"] - events["first-ended"] < LATENCY_BOUND, events
    job = topia.list_jobs(queue="a")[0]
    assert job.state == ("done" if ending == "success" else "failed")
    if ending == "timeout":
        assert "timeout" in (job.error or "")


def test_the_next_job_of_the_same_queue_starts_right_after(topia: Queuetopia) -> None:
    events: list[tuple[str, float]] = []

    @topia.action("step")
    def step(n: int) -> None:
        events.append((f"start-{n}", time.monotonic()))
        time.sleep(0.1)
        events.append((f"end-{n}", time.monotonic()))

    step.delay_many("q", [{"n": n} for n in range(4)])
    with topia.worker():
        wait_for(lambda: len(events) == 8, timeout=10)
    assert [name for name, _ in events] == [
        f"{what}-{n}" for n in range(4) for what in ("start", "end")
    ]
    gaps = [events[i + 1][1] - events[i][1] for i in range(1, 7, 2)]
    assert max(gaps) < LATENCY_BOUND, gaps


def test_notify_wakes_the_workers_of_its_scope_only(
    make_topia: Any, topia: Queuetopia, db: psycopg.Connection[Any]
) -> None:
    """A job made due behind the workers' backs (no notification) waits for the
    next poll, unless someone calls topia.notify(); another scope's notify does not
    count."""
    ran = threading.Event()

    @topia.action("later")
    def later() -> None:
        ran.set()

    job = later.schedule("q", at=timedelta(hours=1))
    other = make_topia()
    with topia.worker() as worker:
        wait_idle(worker)
        make_due_silently(db, topia, job)
        other.notify()
        other.notify("q")
        assert not ran.wait(0.5), "the worker woke without a notification for its scope"
        before = time.monotonic()
        topia.notify()
        assert ran.wait(5), "topia.notify() did not wake the worker"
        assert time.monotonic() - before < LATENCY_BOUND


def test_notify_with_a_queue_name_wakes_the_worker(
    topia: Queuetopia, db: psycopg.Connection[Any]
) -> None:
    ran = threading.Event()

    @topia.action("later")
    def later() -> None:
        ran.set()

    job = later.schedule("q", at=timedelta(hours=1))
    with topia.worker() as worker:
        wait_idle(worker)
        make_due_silently(db, topia, job)
        assert not ran.wait(0.3)
        topia.notify("q")
        assert ran.wait(5), "topia.notify('q') did not wake the worker"


def test_a_dead_workers_queue_is_taken_when_its_lease_runs_out_not_at_the_next_poll(
    topia: Queuetopia, db: psycopg.Connection[Any]
) -> None:
    ran: list[float] = []
    topia.action("tick")(lambda: ran.append(time.monotonic()))
    topia.create_job("q", "tick", {})
    # A worker that died holding the queue: its lease runs out in 2 s.
    db.execute(
        "INSERT INTO queuetopia_leases (scope, queue, lease_id, token, owner, acquired_at,"
        " locked_until) VALUES (%s, 'q', gen_random_uuid(), 0, 'dead:1:x', now(),"
        " now() + interval '2 seconds')",
        (topia.scope,),
    )
    started = time.monotonic()
    with topia.worker():  # poll_interval is 60 s
        wait_for(lambda: ran, timeout=15)
    assert 1.5 < ran[0] - started < 10


@pytest.mark.parametrize("made_by", ["a job that ran", "a resume"])
def test_a_job_scheduled_in_the_past_on_a_known_queue_runs_at_once(
    topia: Queuetopia, made_by: str
) -> None:
    """`schedule(at=datetime.now())` is in the past when it commits: the job lands
    behind the worker's floor (a rewind) and must make its queue due as well. Both are
    writes of the queue row in one statement; done as two, one was lost and the job
    waited for the queue's next enqueue (found by the model of the rules)."""
    ran: list[str] = []

    @topia.action("mark")
    def mark(key: str) -> None:
        ran.append(key)

    with topia.worker(concurrency=2) as worker:
        if made_by == "a resume":
            topia.resume_queue("q")  # creates the queue row, with nothing due
        else:
            mark.delay("q", key="first")
            wait_for(lambda: ran == ["first"], what="the first job")
        wait_idle(worker)
        mark.schedule("q", at=-timedelta(seconds=1), key="late")
        wait_for(lambda: "late" in ran, timeout=LATENCY_BOUND * 5, what="the job scheduled late")
