"""The producer pool hands out a connection used within the last second without a round
trip to check it, unless the server has written to it since: a connection the server
closed (a restart, a failover, pg_terminate_backend) is still replaced, not handed to an
enqueue that would fail (docs/deploying.md)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from queuetopia import Queuetopia
from queuetopia.db import connections as database

from .helpers import wait_for


def pooled_pids(topia: Queuetopia) -> set[int]:
    with topia.connection() as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return {row[0]}


def counted_checks(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The connections the pool checks the slow way (with a round trip), from now on."""
    checks: list[Any] = []
    real = database.ConnectionPool.check_connection
    monkeypatch.setattr(
        database.ConnectionPool,
        "check_connection",
        staticmethod(lambda conn: checks.append(conn) or real(conn)),
    )
    return checks


def test_a_connection_the_server_closed_is_replaced_even_when_just_used(
    make_topia: Any, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topia = make_topia(pool_size=1)
    topia.create_job("q", "x")  # the pool's one connection, just used
    [pid] = pooled_pids(topia)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_for(
            lambda: (
                not admin.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
            ),
            what="the backend to end",
        )
    checks = counted_checks(monkeypatch)
    # Within RECENTLY_USED of its last use: only the server's goodbye tells.
    job = topia.create_job("q", "x")
    assert job.id > 0 and pooled_pids(topia) != {pid}
    assert len(checks) >= 1  # the goodbye was seen, and the connection checked


def test_a_recently_used_connection_skips_the_round_trip(
    topia: Queuetopia, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):  # every connection of the pool used (it hands them out in turn)
        topia.create_job("q", "x")
    checks = counted_checks(monkeypatch)
    topia.create_job("q", "x")
    assert checks == []  # used a moment ago, nothing written by the server since
    monkeypatch.setattr(database, "RECENTLY_USED", 0.0)
    time.sleep(0.01)
    topia.create_job("q", "x")
    assert len(checks) == 1  # idle for longer: checked the slow way
