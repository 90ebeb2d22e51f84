"""A real PgBouncer in transaction mode between producers, workers and PostgreSQL
(scenario 14, docs/postgresql.md "PgBouncer"): workers run every statement through it
(`prepared_statements=False`) and LISTEN straight to PostgreSQL (`listen_dsn`); jobs
keep their order and exclusion with several workers; an enqueue in the caller's
transaction through the pooler commits or rolls back with it; no session state of one
client reaches another through the shared server connections."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from queuetopia import Queuetopia

from .harness import Chaos
from .pgbouncer import PgBouncer
from .server import ChaosServer
from .test_database import wake_latencies

LOCK_TTL = 3.0
WAKE_BOUND = 2.0
POOL_SIZE = 3  # server connections shared by 3 workers x 3 slots and the producer

# What a server connection handed out by PgBouncer carries over from earlier clients.
SESSION_STATE = """
SELECT current_setting('enable_seqscan') AS enable_seqscan,
       current_setting('plan_cache_mode') AS plan_cache_mode,
       current_setting('statement_timeout') AS statement_timeout,
       current_setting('default_transaction_read_only') AS read_only,
       (SELECT count(*) FROM pg_prepared_statements) AS prepared,
       (SELECT count(*) FROM pg_listening_channels()) AS listening,
       (SELECT count(*) FROM pg_locks
         WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory_locks
"""
CLEAN = {
    "enable_seqscan": "on",
    "plan_cache_mode": "auto",
    "statement_timeout": "0",
    "read_only": "off",
    "prepared": 0,
    "listening": 0,
    "advisory_locks": 0,
}


@pytest.fixture
def bouncer(chaos_server: ChaosServer) -> Iterator[PgBouncer]:
    pooler = PgBouncer(chaos_server, pool_size=POOL_SIZE)
    try:
        yield pooler
    finally:
        pooler.close()


def _behind(chaos: Chaos, bouncer: PgBouncer) -> dict[str, str]:
    """Point the scenario's producer at the pooler; the workers' environment."""
    chaos.producer.close()
    chaos.producer = Queuetopia(
        dsn=bouncer.dsn(), scope=chaos.scope, pool_size=2, prepared_statements=False
    )
    return {"QT_CHAOS_LISTEN_DSN": chaos.server.dsn, "QT_CHAOS_PREPARED": "0"}


def _session_state(dsn: str) -> dict[str, object]:
    with psycopg.connect(dsn, prepare_threshold=None, autocommit=True) as conn:
        row = conn.cursor(row_factory=dict_row).execute(SESSION_STATE).fetchone()
        assert row is not None
        return dict(row)


def _every_server_connection(dsn: str, pool_size: int) -> list[dict[str, object]]:
    """The state of each of the pool's server connections: `pool_size` clients each
    hold one in an open transaction, so that they cannot share one."""
    conns = [psycopg.connect(dsn, prepare_threshold=None) for _ in range(pool_size)]
    try:
        states = []
        for conn in conns:
            row = conn.cursor(row_factory=dict_row).execute(SESSION_STATE).fetchone()
            assert row is not None
            states.append({**row, "backend": conn.info.backend_pid})
        assert len({s["backend"] for s in states}) == pool_size
        return [{k: v for k, v in s.items() if k != "backend"} for s in states]
    finally:
        for conn in conns:
            conn.close()


def test_workers_and_producers_behind_pgbouncer(
    make_chaos: Callable[..., Chaos], bouncer: PgBouncer
) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=60.0)
    env = _behind(chaos, bouncer)
    procs = [chaos.worker(concurrency=3, dsn=bouncer.dsn(), env=env, ready=False) for _ in range(3)]
    for proc in procs:
        proc.wait_ready(timeout=60)
    rng = random.Random(14)
    queues = [f"q{i}" for i in range(8)]
    total = chaos.enqueue_grid(queues, 20, lambda q, n: {"sleep": rng.uniform(0.0, 0.05)})
    took = chaos.wait_done(total, timeout=120)
    # Idle workers are woken by NOTIFY: their LISTEN reaches PostgreSQL directly.
    latencies = wake_latencies(chaos, procs, slots=9)
    assert max(latencies) < WAKE_BOUND, latencies
    chaos.wait_done(total + 9, timeout=60)
    states = _every_server_connection(bouncer.dsn(), POOL_SIZE)
    assert all(s == CLEAN for s in states), states
    chaos.assert_drained()
    report = chaos.check(
        "14a workers and producer behind PgBouncer (transaction mode)",
        drain_s=round(took, 1),
        wake_latency_max_s=round(max(latencies), 3),
        server_connections_checked=len(states),
    )
    chaos.assert_clean(report)
    assert {e["pid"] for e in chaos.executions()} == {p.pid for p in procs}
    assert chaos.stop_all() == [0, 0, 0]
    chaos.assert_no_password_in_logs()


def test_enqueue_in_the_callers_transaction_through_pgbouncer(
    make_chaos: Callable[..., Chaos], bouncer: PgBouncer
) -> None:
    chaos = make_chaos(lock_ttl=LOCK_TTL, poll=60.0)
    env = _behind(chaos, bouncer)
    chaos.worker(concurrency=2, dsn=bouncer.dsn(), env=env)
    with psycopg.connect(bouncer.dsn(), prepare_threshold=None) as conn:
        with conn.transaction():
            kept = chaos.producer.create_job("t", "work", {"n": 0}, connection=conn)
            assert chaos.count() == 0  # not visible before the commit
        with pytest.raises(ZeroDivisionError), conn.transaction():
            chaos.producer.create_job("t", "work", {"n": 1}, connection=conn)
            raise ZeroDivisionError  # rolls the enqueue back
    chaos.wait_done(1, timeout=WAKE_BOUND + 10)  # woken by the commit's NOTIFY
    assert chaos.job(kept.id)["state"] == "done"
    assert chaos.count() == 1
    chaos.assert_drained()
    report = chaos.check("14b enqueue in the caller's transaction through PgBouncer")
    chaos.assert_clean(report)
    assert chaos.stop_all() == [0]


def test_the_session_state_check_sees_a_leak(bouncer: PgBouncer) -> None:
    """The check above can fail: a plain SET on one client is seen by the next client
    of the same server connection (the `leakcheck` database has only one)."""
    with psycopg.connect(bouncer.dsn("leakcheck"), prepare_threshold=None, autocommit=True) as a:
        a.execute("SET enable_seqscan = off")
    try:
        assert _session_state(bouncer.dsn("leakcheck"))["enable_seqscan"] == "off"
    finally:
        with psycopg.connect(
            bouncer.dsn("leakcheck"), prepare_threshold=None, autocommit=True
        ) as conn:
            conn.execute("RESET ALL")
    assert _session_state(bouncer.dsn("leakcheck")) == CLEAN
