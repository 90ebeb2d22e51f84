"""The topia that worker-process tests run with `queuetopia worker tests.apps.proc_app:topia`.

Configured from the environment (the DSN from QUEUETOPIA_DSN, the scope from
QT_TEST_SCOPE, the lease TTL from QT_TEST_LOCK_TTL), so each test gets its own scope.
Its action writes one row per execution to `proc_log` (created by tests/procs.py)
through a connection of its own: when it started and ended (database clock), in
which process, at which attempt, and the error the previous attempt left.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg

from queuetopia import Job, Queuetopia

topia = Queuetopia(
    scope=os.environ.get("QT_TEST_SCOPE", "proc-app"),
    lock_ttl=float(os.environ.get("QT_TEST_LOCK_TTL", "3")),
    pool_size=2,
)

_local = threading.local()


def _log_connection() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(topia.dsn, autocommit=True)
        _local.conn = conn
    return conn


@topia.action("step", backoff=lambda job: 0.2, timeout=120.0)
def step(n: int, job: Job, seconds: float = 0.0, first_attempt_seconds: float = 0.0) -> int:
    """Log the start, work for a while in short sleeps, log the end."""
    conn = _log_connection()
    row = conn.execute(
        "INSERT INTO proc_log (scope, job_id, queue, n, attempt, pid, prev_error)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (topia.scope, job.id, job.queue, n, job.attempts, os.getpid(), job.error),
    ).fetchone()
    assert row is not None
    duration = first_attempt_seconds if job.attempts == 1 else seconds
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        time.sleep(0.01)
    conn.execute("UPDATE proc_log SET ended_at = clock_timestamp() WHERE id = %s", (row[0],))
    return n
