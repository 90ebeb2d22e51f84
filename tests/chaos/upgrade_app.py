"""The app of the rolling-upgrade test (test_upgrade_under_load.py), importable by the
first engine (version 4, exported from git) and by this one: each execution writes a
row of `upg_log` in the same database, through a connection of its own."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg

import queuetopia
from queuetopia import Job, Queuetopia

ENGINE = os.environ.get("UPG_ENGINE", "?")
topia = Queuetopia(scope="upgrade", lock_ttl=3.0, poll_interval=1.0, pool_size=2)
_local = threading.local()


def _conn() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(os.environ["QUEUETOPIA_DSN"], autocommit=True)
    return conn


@topia.action("step", timeout=60.0)
def step(n: int, job: Job, ms: int = 60) -> int:
    conn = _conn()
    row = conn.execute(
        "INSERT INTO upg_log (job_id, queue, n, attempt, pid, engine, library)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (job.id, job.queue, n, job.attempts, os.getpid(), ENGINE, queuetopia.__file__),
    ).fetchone()
    assert row is not None
    time.sleep(ms / 1000)
    conn.execute("UPDATE upg_log SET ended_at = clock_timestamp() WHERE id = %s", (row[0],))
    return n
