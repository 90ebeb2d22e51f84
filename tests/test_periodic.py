"""Periodic jobs: exactly once per tick across workers, missed ticks caught up."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from queuetopia import JobState, Queuetopia, ValidationError
from queuetopia.periodic import MAX_CATCH_UP, Periodic
from queuetopia.worker.scheduling import enqueue_due

from .helpers import wait_for


def test_ticks_after_lists_missed_ticks_oldest_first() -> None:
    p = Periodic("*/5 * * * *", "q", "report")
    last = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    now = datetime(2026, 1, 1, 10, 17, tzinfo=UTC)
    assert [t.minute for t in p.ticks_after(last, now)] == [5, 10, 15]
    assert p.ticks_after(now, now) == []
    assert len(p.ticks_after(last - timedelta(days=10), now)) == MAX_CATCH_UP


def test_invalid_cron_is_refused(topia: Queuetopia) -> None:
    with pytest.raises(ValidationError, match="cron"):
        topia.periodic("every tuesday", queue="q")(lambda: None)


def rewind(db: psycopg.Connection[Any], topia: Queuetopia, minutes: int) -> None:
    db.execute(
        "UPDATE queuetopia_periodic SET last_tick = date_trunc('minute', now()) "
        "- make_interval(mins => %s) WHERE scope = %s",
        (minutes, topia.scope),
    )


def test_each_tick_is_enqueued_once_by_racing_workers(
    topia: Queuetopia, dsn: str, db: psycopg.Connection[Any]
) -> None:
    @topia.periodic("* * * * *", queue="reports", params={"kind": "daily"})
    def report(kind: str) -> None: ...

    with psycopg.connect(dsn, autocommit=True) as conn:
        assert enqueue_due(conn, topia.producer, topia.periodics[0]) == 0  # registers, no backfill
    rewind(db, topia, 5)
    counts: list[int] = []
    start = threading.Barrier(4)

    def race() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            start.wait()
            counts.append(enqueue_due(conn, topia.producer, topia.periodics[0]))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    jobs = topia.list_jobs(queue="reports")
    assert sum(counts) == len(jobs)
    assert len(jobs) in (5, 6)  # 6 if a minute boundary passed since the rewind
    assert len({j.scheduled_at for j in jobs}) == len(jobs)
    assert all(j.params == {"kind": "daily"} for j in jobs)


def test_a_worker_catches_up_missed_ticks(
    topia: Queuetopia, dsn: str, db: psycopg.Connection[Any]
) -> None:
    ran: list[str] = []

    @topia.periodic("* * * * *", queue="reports")
    def tick() -> None:
        ran.append("tick")

    with psycopg.connect(dsn, autocommit=True) as conn:
        enqueue_due(conn, topia.producer, topia.periodics[0])
    rewind(db, topia, 3)
    with topia.worker():
        wait_for(lambda: len(ran) >= 3)
    done = topia.list_jobs(queue="reports", state=JobState.DONE)
    assert len(done) == len(ran) >= 3
