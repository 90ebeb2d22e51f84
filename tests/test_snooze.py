"""Snooze (docs/flow-control.md): an action raises or returns `Snooze(seconds)`; its job
waits that long at its queue's head, holding its place, with no attempt charged; the
snooze is logged on the job, counts toward max_blocked, and is not a failure."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
from datetime import timedelta
from typing import Any

import pytest

from queuetopia import Job, JobState, QueueStatus, Queuetopia, Snooze
from queuetopia.db import store

from .helpers import wait_for


def _done(topia: Queuetopia, job: Job, timeout: float = 15.0) -> Job:
    return wait_for(
        lambda: (j := topia.get_job(job.id)) and j.state in ("done", "failed", "cancelled") and j,
        timeout=timeout,
        what=f"job {job.id} to end",
    )


@pytest.mark.parametrize("how", ["raise", "return", "async"])
def test_a_snoozed_head_waits_in_place_and_no_attempt_is_charged(make_topia: Any, how: str) -> None:
    topia: Queuetopia = make_topia(on_failure=lambda job, exc: hooked.append(job.id))
    hooked: list[int] = []
    ran: list[str] = []
    snoozes = {"export": 2}

    def export_body(name: str) -> Any:
        ran.append(name)
        if name == "export" and snoozes["export"] > 0:
            snoozes["export"] -= 1
            if how == "raise":
                raise Snooze(timedelta(seconds=0.3))
            return Snooze(0.3)
        return None

    if how == "async":

        @topia.action("export", max_attempts=1)
        async def export(name: str) -> Any:
            await asyncio.sleep(0)
            return export_body(name)
    else:

        @topia.action("export", max_attempts=1)
        def export(name: str) -> Any:
            return export_body(name)

    first = export.delay("tenant:1", name="export")
    behind = export.delay("tenant:1", name="behind")
    with topia.worker():
        done = _done(topia, behind)
    first = topia.get_job(first.id)
    assert ran == ["export", "export", "export", "behind"]  # the head kept its place
    assert first.state == JobState.DONE and done.state == JobState.DONE
    assert first.attempts == 1  # max_attempts=1: two snoozes charged nothing
    outcomes = [a.outcome for a in first.attempt_log]
    assert outcomes == ["snoozed", "snoozed", "done"]
    assert all(a.error is None for a in first.attempt_log[:2])
    log = first.attempt_log
    for snoozed, after in itertools.pairwise(log):  # the database's times
        assert after.started_at is not None and snoozed.ended_at is not None
        assert (after.started_at - snoozed.ended_at).total_seconds() >= 0.3
    assert first.failing_since is None and first.error is None
    assert hooked == []  # a snooze is not a failure


def test_a_snoozed_queue_is_waiting_not_blocked(topia: Queuetopia) -> None:
    @topia.action("later")
    def later() -> Snooze:
        return Snooze(3600)

    job = later.delay("q")
    with topia.worker():
        snoozed = wait_for(lambda: (j := topia.get_job(job.id)).attempt_log and j)
    assert snoozed.state == JobState.PENDING and snoozed.snoozed
    assert snoozed.attempts == 0
    assert snoozed.next_attempt_at is not None
    assert (snoozed.next_attempt_at - snoozed.attempt_log[-1].ended_at).total_seconds() == (
        pytest.approx(3600, abs=1)
    )
    (info,) = topia.list_queues()
    assert info.status == QueueStatus.WAITING and info.blocked_since is None
    assert info.next_attempt_at == snoozed.next_attempt_at
    with topia.connection() as conn:
        assert store.queue_blocked_stats(conn, scope=topia.scope)[0] == 0
    # An operator may run it now: a retry makes it due at once, at its place.
    assert topia.retry_job(job.id).next_attempt_at is None


def test_a_head_that_keeps_snoozing_is_parked_after_max_blocked(topia: Queuetopia) -> None:
    @topia.action("poll", max_blocked=0.5)
    def poll(n: int) -> Snooze | None:
        return Snooze(0.2) if n == 0 else None

    head, behind = poll.delay("q", n=0), poll.delay("q", n=1)
    with topia.worker():
        _done(topia, behind)
    parked = topia.get_job(head.id)
    assert parked.state == JobState.FAILED
    assert "over max_blocked (0.5s)" in (parked.error or "")
    assert parked.attempts == 1  # the snoozes before were free; the one that parked it counts
    assert parked.attempt_log[-1].outcome == "parked"


def test_a_job_that_failed_then_snoozes_keeps_its_error_and_attempts(topia: Queuetopia) -> None:
    calls: list[int] = []

    @topia.action("flaky", backoff=lambda job: 0.05)
    def flaky() -> Snooze | None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first try broke")
        return Snooze(0.05) if len(calls) == 2 else None

    job = flaky.delay("q")
    with topia.worker():
        done = _done(topia, job)
    assert done.state == JobState.DONE and done.attempts == 2
    assert [a.outcome for a in done.attempt_log] == ["retry", "snoozed", "done"]


@pytest.mark.parametrize(
    ("value", "error"),
    [(-1, ValueError), (math.inf, ValueError), (math.nan, ValueError), ("5", TypeError)],
)
def test_a_snooze_of_no_length_is_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"[Ss]nooze"):
        Snooze(value)


def test_a_bad_snooze_fails_the_attempt_naming_it(topia: Queuetopia) -> None:
    @topia.action("bad", max_attempts=1)
    def bad() -> None:
        raise Snooze(-5)

    job = bad.delay("q")
    with topia.worker():
        failed = _done(topia, job)
    assert failed.state == JobState.FAILED
    assert "a snooze lasts 0 s to a century" in (failed.error or "")


def test_snoozes_in_many_queues_keep_each_queue_in_order(topia: Queuetopia) -> None:
    """Under concurrency: every head snoozes once; each queue still runs in order."""
    seen: dict[str, list[int]] = {}
    snoozed: set[tuple[str, int]] = set()
    lock = threading.Lock()

    @topia.action("step")
    def step_(q: str, n: int) -> Snooze | None:
        with lock:
            if (q, n) not in snoozed:
                snoozed.add((q, n))
                return Snooze(0.01)
            seen.setdefault(q, []).append(n)
        return None

    queues = [f"q{i}" for i in range(8)]
    jobs = [step_.delay(q, q=q, n=n) for n in range(5) for q in queues]
    with topia.worker(concurrency=4):
        wait_for(lambda: sum(map(len, seen.values())) == len(jobs), timeout=30)
    assert seen == {q: list(range(5)) for q in queues}
    assert all(topia.get_job(j.id).attempts == 1 for j in jobs)
