"""The benchmark's database: an embedded PostgreSQL (or $QUEUETOPIA_BENCH_DSN), a
database of its own on it, resets between runs, bulk loading and server counters."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from queuetopia import Queuetopia

DSN_ENV = "QUEUETOPIA_BENCH_DSN"
SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "work_mem",
    "max_wal_size",
    "checkpoint_timeout",
    "max_connections",
    "jit",
    "autovacuum",
)
TABLES = ("queuetopia_jobs", "queuetopia_leases", "queuetopia_queues")


@dataclass
class BenchDatabase:
    """A throwaway database for the run, dropped by `close()`."""

    admin_dsn: str
    dsn: str
    name: str
    embedded: bool
    bin_dir: str | None
    postmaster: int | None = None  # when the server runs on this machine
    _server: Any = None
    _dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    def connect(self, autocommit: bool = True) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=autocommit)

    def close(self) -> None:
        try:
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    [self.name],
                )
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(self.name))
                )
        except psycopg.Error:
            pass
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.cleanup()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


def _pgserver_bin() -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        return None
    path = Path(pgserver.__file__).parent / "pginstall" / "bin"
    return str(path) if path.is_dir() else None


def open_database(max_connections: int | None = None) -> BenchDatabase:
    """Start an embedded server (or use $QUEUETOPIA_BENCH_DSN), create a database of
    our own with synchronous_commit=on, and migrate it. `max_connections`: a new
    embedded server with that setting, whatever $QUEUETOPIA_BENCH_DSN says."""
    configured = None if max_connections else os.environ.get(DSN_ENV)
    server = None
    directory = None
    if configured:
        admin = configured
    else:
        directory = Path(tempfile.mkdtemp(prefix="queuetopia-bench-"))
        server = _embedded(directory, max_connections)
        admin = str(server.get_uri())
    name = f"queuetopia_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = on").format(sql.Identifier(name))
        )
    dsn = make_conninfo(admin, dbname=name)
    db = BenchDatabase(
        admin, dsn, name, server is not None, _pgserver_bin(), None, server, directory
    )
    with Queuetopia(dsn=dsn) as topia:  # closed: its pool would hold a connection
        topia.migrate()
    with db.connect() as conn:
        value = conn.execute("SHOW synchronous_commit").fetchone()
        if value is None or value[0] != "on":
            raise RuntimeError(f"synchronous_commit is {value}, expected on")
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        # while this backend still lives: its parent is the postmaster
        db.postmaster = _local_postmaster(row[0] if row else None)
    return db


def _embedded(directory: Path, max_connections: int | None) -> Any:
    """A pgserver in `directory`, deleted at exit. With `max_connections`, the setting
    is written with ALTER SYSTEM and the server started again (a postmaster reads it
    only at start): pgserver takes no server options of its own."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        if max_connections is not None:
            first = pgserver.get_server(directory, cleanup_mode="stop")  # type: ignore[attr-defined]
            with psycopg.connect(str(first.get_uri()), autocommit=True) as conn:
                conn.execute(f"ALTER SYSTEM SET max_connections = {int(max_connections)}")
            first.cleanup()  # stops it, keeps the directory
        return pgserver.get_server(directory, cleanup_mode="delete")  # type: ignore[attr-defined]


def max_connections(db: BenchDatabase) -> int:
    with db.connect() as conn:
        row = conn.execute("SHOW max_connections").fetchone()
    return int(row[0]) if row else 0


def server_log_size(db: BenchDatabase) -> int | None:
    """The embedded server's log size now, to read what it logs from here on."""
    path = _server_log(db)
    return path.stat().st_size if path is not None and path.exists() else None


def server_log_since(db: BenchDatabase, offset: int | None) -> str:
    path = _server_log(db)
    if path is None or offset is None or not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _server_log(db: BenchDatabase) -> Path | None:
    """pgserver logs to `<pgdata>/log`; an external server's log is not ours to read."""
    return db._dir / "log" if db._dir is not None and db.embedded else None


def _local_postmaster(backend: int | None) -> int | None:
    """The postmaster's pid when the server runs here (a backend's parent)."""
    if backend is None:
        return None
    try:
        cmdline = Path(f"/proc/{backend}/cmdline").read_bytes()
        text = Path(f"/proc/{backend}/stat").read_text()
    except OSError:
        return None
    if not cmdline.startswith(b"postgres"):
        return None
    return int(text[text.rindex(")") + 2 :].split()[1])


def settings(db: BenchDatabase) -> dict[str, str]:
    with db.connect() as conn:
        out = {}
        for name in SETTINGS:
            row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            out[name] = str(row[0]) if row else "?"
        row = conn.execute("SELECT version()").fetchone()
        out["version"] = str(row[0]) if row else "?"
    return out


def libpq_env(db: BenchDatabase) -> dict[str, str]:
    """The DSN as PG* variables, for pgbench."""
    parts = conninfo_to_dict(db.dsn)
    names = {
        "host": "PGHOST",
        "port": "PGPORT",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "dbname": "PGDATABASE",
    }
    return {names[k]: str(v) for k, v in parts.items() if k in names and v not in (None, "")}


def reset(db: BenchDatabase) -> None:
    """Empty the queuetopia tables (no worker may be running) and checkpoint, so every
    run starts from the same state."""
    with db.connect() as conn:
        conn.execute("TRUNCATE " + ", ".join(TABLES))
        with contextlib.suppress(psycopg.Error):
            conn.execute("CHECKPOINT")


def vacuum_analyze(db: BenchDatabase) -> None:
    with db.connect() as conn:
        for table in TABLES:
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def queue_name(i: int) -> str:
    return f"q{i:07d}"


LOAD_QUEUES = """
INSERT INTO queuetopia_queues (scope, queue, last_seq, ready_at)
SELECT %(scope)s, 'q' || lpad(q::text, 7, '0'), %(per_queue)s,
       %(base)s + q * interval '1 microsecond'
  FROM generate_series(1, %(queues)s) AS q
"""

# Jobs arrive interleaved across queues (seq outer, queue inner), as they would in
# real life; scheduled_at grows with arrival, so (scheduled_at, seq) is queue order.
LOAD_JOBS = """
INSERT INTO queuetopia_jobs (scope, queue, seq, action, params, max_attempts, timeout,
                             max_backoff, scheduled_at)
SELECT %(scope)s, 'q' || lpad(q::text, 7, '0'), s, 'noop', '{}'::jsonb, 20, 60, 86400,
       %(base)s + ((s - 1) * %(queues)s + q) * interval '1 microsecond'
  FROM generate_series(1, %(per_queue)s) AS s, generate_series(1, %(queues)s) AS q
"""


def bulk_load(db: BenchDatabase, scope: str, queues: int, per_queue: int) -> None:
    """Load `queues` x `per_queue` pending no-op jobs, due now, straight into the
    tables (the schema of migrations/0001_initial.up.sql): last_seq and ready_at set
    as enqueue would set them. Then VACUUM ANALYZE, as autovacuum would eventually."""
    with db.connect(autocommit=False) as conn:
        base = conn.execute("SELECT now() - interval '1 hour'").fetchone()
        params = {
            "scope": scope,
            "queues": queues,
            "per_queue": per_queue,
            "base": base[0] if base else None,
        }
        conn.execute(LOAD_QUEUES, params)
        conn.execute(LOAD_JOBS, params)
        conn.commit()
    vacuum_analyze(db)


def counters(db: BenchDatabase) -> dict[str, float]:
    """Server-wide counters, for per-job deltas: commits, tuples written, WAL bytes."""
    with db.connect() as conn:
        row = conn.execute(
            """
            SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted,
                   tup_returned + tup_fetched AS tup_read,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS wal_bytes
              FROM pg_stat_database WHERE datname = current_database()
            """
        ).fetchone()
    assert row is not None
    keys = ("commits", "rollbacks", "inserted", "updated", "deleted", "read", "wal_bytes")
    return {k: float(v) for k, v in zip(keys, row, strict=True)}


def stat_delta(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    """Per-job deltas. pg_stat_database lags a little (stats are flushed at most once a
    second per backend), so read `after` once the workers have exited."""
    if jobs <= 0:
        return {}
    return {f"{k}_per_job": round((after[k] - before[k]) / jobs, 2) for k in before}
