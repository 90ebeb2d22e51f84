"""Scenario 21: a DBA's timeouts on the role the workers and the producer log in as
(`statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout`, 250 ms
each), and statements held past them: the test locks queuetopia's tables (as a
migration or a `VACUUM FULL` would) for 1.5 s, three times, while jobs run. A worker's
cancelled statement is retried like an outage: no worker exits, no attempt is charged,
nothing runs twice. A producer gets a StatementCancelled and writes nothing; a
transaction left idle past the timeout is ended by the server and writes nothing
(docs/postgresql.md, "Settings")."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from queuetopia import Queuetopia, StatementCancelled

from .harness import Chaos, now
from .server import ChaosServer, dsn_for

ROLE = "qt_limited"
TIMEOUT = "250ms"
LOCK_TTL = 10.0
HELD = 1.5  # seconds each lock is held: inside the outage bound at lock_ttl 10 s
LOCK_TABLES = "LOCK TABLE queuetopia_jobs, queuetopia_leases IN ACCESS EXCLUSIVE MODE"


@pytest.fixture
def limited_dsn(chaos_server: ChaosServer) -> Iterator[str]:
    password = "limited-pw"
    with psycopg.connect(chaos_server.dsn, autocommit=True) as conn:
        conn.execute(
            f"DO $$ BEGIN CREATE ROLE {ROLE} LOGIN SUPERUSER;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        conn.execute(f"ALTER ROLE {ROLE} PASSWORD '{password}'")
        for setting in (
            "statement_timeout",
            "lock_timeout",
            "idle_in_transaction_session_timeout",
        ):
            conn.execute(f"ALTER ROLE {ROLE} SET {setting} = '{TIMEOUT}'")
    yield dsn_for(chaos_server.port, ROLE, password)
    with psycopg.connect(chaos_server.dsn, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE {ROLE} RESET ALL")


def test_statements_cancelled_by_the_roles_timeouts_are_retried(
    make_chaos: Callable[..., Chaos], limited_dsn: str
) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=1.0)
    chaos.new_producer(limited_dsn)
    workers = [chaos.worker(concurrency=3, dsn=limited_dsn, ready=False) for _ in range(2)]
    for worker in workers:
        worker.wait_ready(timeout=60)
    total = chaos.enqueue_grid([f"q{i}" for i in range(6)], 30, lambda q, n: {"sleep": 0.05})
    chaos.wait_done(10, timeout=60)
    refused = 0
    with psycopg.connect(
        chaos.server.dsn, autocommit=True, application_name="chaos-locker"
    ) as locker:
        for _ in range(3):
            began = now()
            with locker.transaction():
                locker.execute(LOCK_TABLES)
                with pytest.raises(StatementCancelled, match="statement timeout"):
                    chaos.producer.create_job("extra", "work", {"n": 0})
                refused += 1
                time.sleep(HELD)
            chaos.fault("tables-locked", None, began, now())
            chaos.wait_done(chaos.count("done") + 10, timeout=60)
    _an_idle_transaction_writes_nothing(chaos, limited_dsn)
    chaos.wait_done(total, timeout=120)
    assert chaos.count() == total  # the refused enqueues wrote nothing
    assert all(w.popen.poll() is None for w in workers)
    # Inside the bound: no attempt charged, no job run twice.
    assert {chaos.job(e["job_id"])["attempts"] for e in chaos.executions()} == {1}
    cancelled = sum(w.log().count("StatementCancelled") for w in workers)
    assert cancelled > 0, "no statement of the workers was cancelled: the test tested nothing"
    chaos.assert_drained()
    report = chaos.check(
        "21 statement, lock and idle-in-transaction timeouts of 250 ms on the role",
        tables_locked=f"3 x {HELD} s",
        enqueues_refused=refused,
        worker_lines_naming_a_cancel=cancelled,
    )
    chaos.assert_clean(report)
    assert chaos.stop_all() == [0, 0]
    chaos.assert_no_password_in_logs()


def _an_idle_transaction_writes_nothing(chaos: Chaos, dsn: str) -> None:
    """An enqueue in the caller's transaction, left idle past the timeout: the server
    ends the session, and the job never existed."""
    before = chaos.count()
    with Queuetopia(dsn=dsn, scope=chaos.scope) as topia:
        conn = psycopg.connect(dsn)
        try:
            topia.create_job("idle", "work", {"n": 0}, connection=conn)
            time.sleep(1.0)
            with pytest.raises(psycopg.Error, match="idle-in-transaction timeout"):
                conn.commit()
        finally:
            conn.close()
    assert chaos.count() == before
