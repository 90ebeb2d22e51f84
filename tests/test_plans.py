"""Worker connections plan each statement once, with a generic plan, and sequential
scans off (queuetopia.db.connections.Database.connect_worker). The generic plan of every
statement a worker runs must reach jobs and queues through an index, on a fresh,
empty install (where a worker that starts before a burst of jobs makes its plans) as
much as on a big one."""

from __future__ import annotations

from importlib import resources
from typing import Any

import psycopg

from .helpers import positional

# Every statement a worker runs on its own connections (queuetopia/worker/: the steps,
# the housekeeping, the heartbeat and periodic jobs).
WORKER_STATEMENTS = [
    "JOB_STEP",
    "QUEUE_DUE",
    "JOB_NOTE_ERROR",
    "JOB_GET",
    "LEASE_RENEW",
    "LEASE_BARRIER",  # after a step retried because its reply was lost
    "LEASE_RELEASE",
    "QUEUE_NEXT_DUE",
    "SCOPE_NOTIFY",  # a release at the end of a turn, or while stopping, wakes the others
    "PRUNE_LOCK",  # pruning finished jobs
    "JOB_PRUNE_BATCH",
    "BUCKET_PRUNE",  # and the rate limits' budgets full again
    "DB_NOW",  # periodic jobs: their ticks, and their enqueue
    "PERIODIC_REGISTER",
    "PERIODIC_LOCK",
    "PERIODIC_ADVANCE",
    "JOB_INSERT_MANY",
    "JOB_INSERT_UNIFORM",
    "JOB_GET_UNIQUE",
    "JOB_IDS_MISSING",  # an enqueue whose jobs name others in `after`
    "JOB_AWAIT",  # a head that waits for other jobs
]

# The statements a worker never runs: producers, operators (CLI, API), the dashboard
# and metrics run them on ordinary connections, planned for their own parameters.
OTHER_STATEMENTS = [
    "JOB_LIST",
    "JOB_RETRY",
    "JOB_CANCEL",
    "JOB_SELECT",
    "QUEUE_TOUCH",
    "QUEUE_SET_PAUSED",
    "QUEUE_LIST",
    "QUEUE_SELECT",
    "QUEUE_BLOCKED_STATS",
    "LEASE_LIST",
    "QUEUE_LINE",
    "JOB_COUNTS_PER_MINUTE",
    "LIMIT_SET",
    "LIMIT_LIST",
    "LIMIT_REMOVE",
]


def test_every_statement_is_either_a_worker_statement_or_not() -> None:
    """A new statement (a new file of queuetopia/db/sql/) must be put in one list or the
    other, so none the worker runs goes unchecked."""
    loaded = {
        entry.name.removesuffix(".sql").upper()
        for entry in resources.files("queuetopia.db").joinpath("sql").iterdir()
        if entry.name.endswith(".sql")
    }
    assert not set(WORKER_STATEMENTS) & set(OTHER_STATEMENTS)
    assert sorted(WORKER_STATEMENTS + OTHER_STATEMENTS) == sorted(loaded)


def generic_plan(conn: psycopg.Connection[Any], name: str) -> str:
    sql, _ = positional(name)
    rows = conn.execute(("EXPLAIN (GENERIC_PLAN) " + sql).encode(), prepare=False).fetchall()
    return "\n".join(row[0] for row in rows)


def assert_indexes_only(conn: psycopg.Connection[Any]) -> None:
    for name in WORKER_STATEMENTS:
        plan = generic_plan(conn, name)
        assert "Seq Scan on queuetopia_jobs" not in plan, f"{name}:\n{plan}"
        assert "Seq Scan on queuetopia_queues" not in plan, f"{name}:\n{plan}"


def test_generic_plans_use_indexes_on_an_empty_install(
    schema_conn: psycopg.Connection[Any],
) -> None:
    assert_indexes_only(schema_conn)  # never analyzed
    schema_conn.execute("ANALYZE")
    assert_indexes_only(schema_conn)  # analyzed while empty


def test_generic_plans_use_indexes_with_many_queues_and_jobs(
    schema_conn: psycopg.Connection[Any],
) -> None:
    schema_conn.execute(
        "INSERT INTO queuetopia_queues (scope, queue, last_seq, ready_at)"
        " SELECT scope, 'q' || n, 20,"
        "        CASE WHEN n % 100 = 0 THEN now() ELSE now() + interval '1 hour' END"
        "   FROM generate_series(0, 1999) AS n, unnest(ARRAY['s', 't']) AS scope"
    )
    schema_conn.execute(
        "INSERT INTO queuetopia_jobs (scope, queue, seq, action, params, on_exhausted,"
        " max_attempts, timeout, max_backoff, meta, scheduled_at, state, done_at)"
        " SELECT 's', 'q' || (n % 2000), n / 2000 + 1, 'a', '{}', 'block', 3, 60, 60, '{}',"
        "        now(), CASE WHEN n % 3 = 0 THEN 'done' ELSE 'pending' END,"
        "        CASE WHEN n % 3 = 0 THEN now() END"
        "   FROM generate_series(1, 40000) AS n"
    )
    schema_conn.execute("ANALYZE")
    assert_indexes_only(schema_conn)
