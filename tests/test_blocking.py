"""A bound on blocking and the attempt history (docs/blocking.md, docs/results.md):
an action's `max_blocked` parks a head that has held its queue blocked too long, so
the queue moves on; every attempt is kept in the job's attempt_log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from queuetopia import Job, JobState, Queuetopia, ValidationError
from queuetopia.metrics import PrometheusMetrics
from queuetopia.testing import drain

from .helpers import wait_for

Conn = psycopg.Connection[Any]


@pytest.fixture
def db(dsn: str) -> Iterator[Conn]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def failing_for(db: Conn, job: Job, hours: float) -> None:
    """Make `job` look as if its first failed attempt was `hours` ago."""
    db.execute(
        "UPDATE queuetopia_jobs SET failing_since = now() - make_interval(secs => %s * 3600),"
        " next_attempt_at = now() WHERE id = %s",
        (hours, job.id),
    )
    db.execute(
        "UPDATE queuetopia_queues SET ready_at = now() WHERE scope = %s AND queue = %s",
        (job.scope, job.queue),
    )


def test_a_head_blocked_past_max_blocked_is_parked_and_its_queue_moves_on(
    topia: Queuetopia, db: Conn
) -> None:
    hooked: list[tuple[int, str]] = []
    ran: list[str] = []

    @topia.action(
        "sync",
        max_blocked=timedelta(hours=1),
        on_failure=lambda job, error: hooked.append((job.id, job.state.value)),
    )
    def sync(name: str) -> None:
        ran.append(name)
        if name == "bad":
            raise ConnectionError("the partner is down")

    bad = sync.delay("customer:1", name="bad")
    behind = sync.delay("customer:1", name="behind")
    drain(topia)
    assert topia.get_job(bad.id).state == JobState.PENDING  # type: ignore[union-attr]
    failing_for(db, bad, 0.5)  # under the bound: retried, still blocking
    drain(topia)
    assert topia.get_job(bad.id).state == JobState.PENDING  # type: ignore[union-attr]
    assert ran == ["bad", "bad"]

    failing_for(db, bad, 2)
    drain(topia)
    parked = topia.get_job(bad.id)
    assert parked is not None and parked.state == JobState.FAILED
    assert "parked: blocked its queue for 720" in (parked.error or "")
    assert "over max_blocked (3600s)" in (parked.error or "")
    assert parked.done_at is not None
    assert [a.outcome for a in parked.attempt_log] == ["retry", "retry", "parked"]
    assert ran == ["bad", "bad", "bad", "behind"]
    assert topia.get_job(behind.id).state == JobState.DONE  # type: ignore[union-attr]
    assert hooked[-1] == (bad.id, "failed")
    [info] = topia.list_queues()
    assert info.failed == 1 and info.oldest_failed_at == parked.done_at
    assert info.status.value == "idle"


def test_a_parked_job_of_a_blocking_action_leaves_the_line(topia: Queuetopia, db: Conn) -> None:
    @topia.action("strict", max_attempts=2, on_exhausted="block", max_blocked=60)
    def strict() -> None:
        raise RuntimeError("no")

    job = strict.delay("q")
    drain(topia)
    failing_for(db, job, 1)
    drain(topia)
    parked = topia.get_job(job.id)
    assert parked is not None and parked.state == JobState.FAILED
    assert parked.on_exhausted == "skip"  # out of line: the queue is not blocked
    [info] = topia.list_queues()
    assert info.head is None and info.failed == 1


def test_without_max_blocked_a_head_blocks_until_exhausted(topia: Queuetopia, db: Conn) -> None:
    @topia.action("patient", max_attempts=3)
    def patient() -> None:
        raise RuntimeError("no")

    job = patient.delay("q")
    drain(topia)
    failing_for(db, job, 1000)
    drain(topia)
    assert topia.get_job(job.id).state == JobState.PENDING  # type: ignore[union-attr]


def test_max_blocked_must_be_a_positive_duration(topia: Queuetopia) -> None:
    with pytest.raises(ValidationError, match="max_blocked must be a positive duration"):

        @topia.action("x", max_blocked=0)
        def x() -> None: ...


def test_parked_jobs_are_counted_by_the_metrics(topia: Queuetopia, db: Conn) -> None:
    @topia.action("sync", max_blocked=1)
    def sync() -> None:
        raise RuntimeError("down")

    job = sync.delay("q")
    drain(topia)
    failing_for(db, job, 1)
    metrics = PrometheusMetrics(topia, registry=CollectorRegistry())
    worker = topia.worker()
    worker.observers.append(metrics)
    with worker:
        wait_for(lambda: topia.get_job(job.id).state == JobState.FAILED)  # type: ignore[union-attr]
        wait_for(
            lambda: (
                metrics.registry.get_sample_value(
                    "queuetopia_jobs_parked_total", {"scope": topia.scope, "action": "sync"}
                )
                == 1.0
            )
        )


def test_every_attempt_is_kept_with_its_node_times_and_error(topia: Queuetopia) -> None:
    calls: list[int] = []

    @topia.action("flaky", backoff=lambda job: 0)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError(f"try {len(calls)} failed " + "x" * 5000)
        return "ok"

    job = flaky.delay("q")
    drain(topia)
    done = topia.get_job(job.id)
    assert done is not None and done.state == JobState.DONE
    log = done.attempt_log
    assert [(a.attempt, a.outcome) for a in log] == [(1, "retry"), (2, "retry"), (3, "done")]
    assert log[0].error is not None and log[0].error.startswith("ValueError: try 1 failed")
    assert log[0].error is not None and len(log[0].error) == 2000  # capped
    assert log[2].error is None
    for attempt in log:
        assert attempt.node and attempt.started_at and attempt.ended_at
        assert attempt.started_at <= attempt.ended_at


def test_a_job_that_succeeded_at_once_shows_its_one_attempt(topia: Queuetopia) -> None:
    @topia.action("fine")
    def fine() -> None: ...

    job = fine.delay("q")
    drain(topia)
    done = topia.get_job(job.id)
    assert done is not None
    [attempt] = done.attempt_log
    assert (attempt.attempt, attempt.outcome, attempt.node) == (1, "done", done.attempted_by)
    assert attempt.ended_at == done.done_at


def test_the_attempt_log_keeps_the_last_twenty(topia: Queuetopia) -> None:
    @topia.action("never", max_attempts=25, backoff=lambda job: 0)
    def never() -> None:
        raise RuntimeError("no")

    job = never.delay("q")
    drain(topia, max_jobs=30)
    failed = topia.get_job(job.id)
    assert failed is not None and failed.state == JobState.FAILED
    assert [a.attempt for a in failed.attempt_log] == list(range(6, 26))
    assert failed.attempt_log[-1].outcome == "failed"
