"""Cancelling a running job (docs/flow-control.md): an `async def` action's task is
cancelled, a plain action is interrupted, `job.cancel_requested` tells the action's own
threads; the job ends cancelled with who, when and why, its queue moves on; a worker
on another node learns it from the notification channel, or, if that is lost, from
its next lease renewal; a cancel racing the job's own end leaves exactly one outcome."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from queuetopia import InvalidTransition, Job, JobState, Queuetopia, Selection
from queuetopia.db.notify import MAX_CANCELS, Listener, cancel_payloads, parse_cancel

from .helpers import take, wait_for
from .procs import LOG_TABLE, workers


def _ended(topia: Queuetopia, job_id: int, timeout: float = 15.0) -> Job:
    return wait_for(
        lambda: (j := topia.get_job(job_id)) and j.state in ("done", "failed", "cancelled") and j,
        timeout=timeout,
        what=f"job {job_id} to end",
    )


def _running(topia: Queuetopia, job_id: int) -> Job:
    return wait_for(
        lambda: (j := topia.get_job(job_id)) and j.state == JobState.RUNNING and j,
        what=f"job {job_id} to run",
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_running_job_is_stopped_ends_cancelled_and_its_queue_moves_on(
    make_topia: Any, kind: str
) -> None:
    hooked: list[int] = []
    topia: Queuetopia = make_topia(on_failure=lambda job, exc: hooked.append(job.id))
    started, stopped, ran = threading.Event(), threading.Event(), []

    if kind == "sync":

        @topia.action("long", timeout=60)
        def long(n: int) -> None:
            if n == 0:
                started.set()
                try:
                    while True:
                        time.sleep(0.01)
                finally:
                    stopped.set()
            ran.append(n)
    else:

        @topia.action("long", timeout=60)
        async def long(n: int) -> None:
            if n == 0:
                started.set()
                try:
                    await asyncio.sleep(60)
                finally:
                    stopped.set()
            ran.append(n)

    first = long.delay("q", n=0)
    long.delay("q", n=1)
    with topia.worker():
        assert started.wait(10)
        asked = topia.cancel_job(first.id, "customer left", by="ada")
        assert asked.state == JobState.RUNNING  # stopped by its worker, not here
        assert asked.operator_log[-1].action == "cancel" and asked.operator_log[-1].by == "ada"
        cancelled = _ended(topia, first.id, timeout=10)
        wait_for(lambda: ran == [1], what="the job behind to run")
    assert stopped.is_set()
    assert cancelled.state == JobState.CANCELLED and cancelled.done_at is not None
    assert (cancelled.error or "").startswith("cancelled: customer left")
    assert cancelled.attempt_log[-1].outcome == "cancelled"
    assert cancelled.attempts == 1
    assert hooked == []  # a cancel is not a failure


def test_threads_of_the_action_see_cancel_requested(topia: Queuetopia) -> None:
    seen = threading.Event()

    @topia.action("fan")
    def fan(job: Job) -> None:
        assert not job.cancel_requested

        def helper() -> None:  # not interrupted: it polls at its safe points
            while not job.cancel_requested:
                time.sleep(0.01)
            seen.set()

        threading.Thread(target=helper, daemon=True).start()
        while True:
            time.sleep(0.01)

    job = fan.delay("q")
    with topia.worker():
        _running(topia, job.id)
        wait_for(lambda: topia.get_job(job.id).attempted_at is not None)
        time.sleep(0.05)  # let the action start its helper
        topia.cancel_job(job.id)
        assert seen.wait(10)
        assert _ended(topia, job.id).state == JobState.CANCELLED


def test_a_cancel_reaches_a_worker_on_another_node_without_polling(
    topia: Queuetopia, dsn: str
) -> None:
    """The worker runs in another process with leases renewed every 20 s and polls
    every minute: only the notification can stop its job within seconds."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(LOG_TABLE)
    job = topia.create_job("q", "step", {"n": 0, "first_attempt_seconds": 600.0})
    behind = topia.create_job("q", "step", {"n": 1})
    with workers(dsn, topia.scope, QT_TEST_LOCK_TTL="60") as group:
        group.start().wait_ready()
        _running(topia, job.id)
        asked = time.monotonic()
        topia.cancel_job(job.id, "wrong customer")
        cancelled = _ended(topia, job.id, timeout=10)
        took = time.monotonic() - asked
        assert _ended(topia, behind.id).state == JobState.DONE
    assert cancelled.state == JobState.CANCELLED, cancelled
    assert took < 10  # a lease renewal comes only every 20 s


def test_a_lost_cancel_notification_is_made_up_by_the_lease_renewal(
    make_topia: Any, db: psycopg.Connection[Any]
) -> None:
    topia: Queuetopia = make_topia(lock_ttl=1.5)

    @topia.action("long")
    def long() -> None:
        while True:
            time.sleep(0.01)

    job = long.delay("q")
    with topia.worker():
        _running(topia, job.id)
        # What cancel_job writes, without its notification.
        db.execute(
            "UPDATE queuetopia_jobs SET cancel_request = jsonb_build_object("
            " 'by', 'ops', 'at', now(), 'reason', 'no notification')"
            " WHERE scope = %s AND id = %s",
            (topia.scope, job.id),
        )
        cancelled = _ended(topia, job.id, timeout=10)
    assert cancelled.state == JobState.CANCELLED
    assert (cancelled.error or "").startswith("cancelled: no notification")


def test_a_job_left_running_by_a_vanished_worker_is_cancelled_not_retried(
    topia: Queuetopia, db: psycopg.Connection[Any]
) -> None:
    ran: list[int] = []

    @topia.action("work")
    def work(n: int) -> None:
        ran.append(n)

    first = work.delay("q", n=0)
    work.delay("q", n=1)
    taken = take(db, topia.scope, "q", owner="vanished")  # claimed, then its worker died
    assert taken.job.id == first.id and taken.job.state == JobState.RUNNING
    topia.cancel_job(first.id, "stuck")
    db.execute(
        "UPDATE queuetopia_leases SET locked_until = now() - interval '1 second'"
        " WHERE scope = %s AND queue = 'q'",
        (topia.scope,),
    )
    with topia.worker():
        wait_for(lambda: ran == [1], what="the job behind to run")
    cancelled = topia.get_job(first.id)
    assert cancelled.state == JobState.CANCELLED
    assert (cancelled.error or "").startswith("cancelled: stuck")
    assert ran == [1]  # the cancelled job never ran again


def test_a_cancel_racing_the_jobs_own_end_leaves_exactly_one_outcome(
    topia: Queuetopia,
) -> None:
    """Jobs of 0-30 ms in 6 queues, cancelled at random moments from another thread:
    each ends done or cancelled, as the cancel call said it could, and each queue runs
    its jobs that were not cancelled in order."""
    rng = random.Random(21)
    runs: dict[str, list[int]] = {}
    lock = threading.Lock()

    @topia.action("short")
    def short(q: str, n: int, ms: int) -> None:
        deadline = time.monotonic() + ms / 1000
        while time.monotonic() < deadline:
            time.sleep(0.001)
        with lock:
            runs.setdefault(q, []).append(n)

    queues = [f"q{i}" for i in range(6)]
    jobs = [short.delay(q, q=q, n=n, ms=rng.randint(0, 30)) for n in range(12) for q in queues]
    said: dict[int, str] = {}

    def canceller() -> None:
        for job in rng.sample(jobs, 30):
            time.sleep(rng.uniform(0, 0.02))
            try:
                said[job.id] = topia.cancel_job(job.id, "race").state.value
            except InvalidTransition:
                said[job.id] = "refused"

    with topia.worker(concurrency=4):
        thread = threading.Thread(target=canceller)
        thread.start()
        thread.join(30)
        ended = {j.id: _ended(topia, j.id, timeout=30) for j in jobs}
    for job_id, answer in said.items():
        final = ended[job_id].state.value
        allowed = {
            "cancelled": {"cancelled"},
            "running": {"cancelled", "done"},
            "refused": {"done"},
        }[answer]
        assert final in allowed, (job_id, answer, final)
    assert all(ended[j.id].state.value in ("done", "cancelled") for j in jobs)
    by_queue: dict[str, list[int]] = {}
    for job in jobs:
        if ended[job.id].state == JobState.DONE:
            by_queue.setdefault(job.queue, []).append(job.params["n"])
    assert {q: runs.get(q, []) for q in by_queue} == by_queue  # in order, each once
    assert any(a == "running" for a in said.values()), said  # the race was run


def test_a_selection_cancels_running_jobs_too(topia: Queuetopia) -> None:
    @topia.action("long")
    def long() -> None:
        while True:
            time.sleep(0.01)

    jobs = [long.delay(f"q{i}") for i in range(3)]
    with topia.worker(concurrency=3):
        for job in jobs:
            _running(topia, job.id)
        selected = topia.cancel_jobs(Selection(states=("running",)), reason="all of them")
        assert sorted(j.id for j in selected) == sorted(j.id for j in jobs)
        ended = [_ended(topia, j.id) for j in jobs]
    assert all(j.state == JobState.CANCELLED for j in ended)


AT = '"2026-12-06T10:00:00+00:00"'


@pytest.mark.parametrize(
    "payload",
    [
        '{"scope": 5, "cancel": [[1, ' + AT + "]]}",
        '{"scope": "s", "cancel": "1"}',
        '{"scope": "s", "cancel": [1]}',
        '{"scope": "s", "cancel": [[1.5, ' + AT + "]]}",
        '{"scope": "s", "cancel": [[true, ' + AT + "]]}",
        '{"scope": "s", "cancel": [[-1, ' + AT + "]]}",
        '{"scope": "s", "cancel": [[99999999999999999999, ' + AT + "]]}",
        '{"scope": "s", "cancel": [[1, "yesterday"]]}',
        '{"scope": "s", "cancel": [[1, "2026-12-06T10:00:00"]]}',  # no time zone
        '{"scope": "s", "cancel": [[1, ' + AT + ", 2]]}",
        '{"scope": "s", "cancel": [[1, ' + AT + "]], " + '"x": ' + "[" * 10_000 + "}",
        '{"scope": "s", "cancel": [' + ",".join(["[1, " + AT + "]"] * (MAX_CANCELS + 1)) + "]}",
        '["s", "q"]',
        "[[[[",
    ],
)
def test_a_cancel_payload_is_untrusted_input(payload: str) -> None:
    assert parse_cancel(payload) is None


def test_cancel_payloads_fit_a_notification() -> None:
    at = datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC)
    attempts = [(i, at + timedelta(seconds=i - 2**62)) for i in range(2**62, 2**62 + 1000)]
    payloads = cancel_payloads("s" * 255, attempts)
    assert all(len(p.encode()) < 8000 for p in payloads)
    assert [a for p in payloads for a in parse_cancel(p)[1]] == attempts  # type: ignore[index]


def test_a_listener_given_bad_cancel_payloads_still_hears_the_good_one(
    topia: Queuetopia, db: psycopg.Connection[Any]
) -> None:
    heard: list[Any] = []
    database = topia.engine.listen_database
    listener = Listener(database, topia.scope, lambda q: None, on_cancel=heard.append)
    listener.start()
    try:
        wait_for(lambda: listener.healthy, what="the listener to connect")
        at = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
        bad = [json.dumps({"scope": topia.scope, "cancel": [[1, "x"]]}), "{", '{"cancel": 5}']
        for payload in [*bad, *cancel_payloads(topia.scope, [(7, at)])]:
            db.execute("SELECT pg_notify('queuetopia', %s)", (payload,))
        wait_for(lambda: heard, what="the good payload")
        assert heard == [(7, at)] and listener.alive
    finally:
        listener.stop()
