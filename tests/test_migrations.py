"""The schema (SPEC §7): migrate() is idempotent and safe to race, in threads and in
processes; up_sql()/down_sql() give the same schema to teams with their own tool, and
the down path removes everything. Each test works in a database of its own, created
on the test server and dropped afterwards."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from queuetopia import Queuetopia, migrations

from .helpers import wait_for
from .procs import CLI, ROOT, cli_env, run_cli

Conn = psycopg.Connection[Any]
VERSIONS = [m.version for m in migrations.all_migrations()]


def schema_objects(conn: Conn) -> set[tuple[str, str]]:
    """Every relation, function and type in the database's own schemas."""
    rows = conn.execute(
        """
        SELECT 'relation:' || c.relkind::text, n.nspname || '.' || c.relname
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
        UNION ALL
        SELECT 'function', n.nspname || '.' || p.proname
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
        UNION ALL
        SELECT 'type', n.nspname || '.' || t.typname
          FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
        """
    ).fetchall()
    return {(kind, name) for kind, name in rows}


def applied(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT version, name FROM queuetopia_versions ORDER BY 1").fetchall()


def hold_the_migration_lock(dsn: str) -> Conn:
    """A session that holds migrate()'s advisory lock, so racers pile up behind it."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s)", (migrations._ADVISORY_KEY,))
    return conn


def wait_for_waiters(conn: Conn, count: int) -> None:
    def waiting() -> bool:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
        ).fetchone()
        return row is not None and row[0] == count

    wait_for(waiting, timeout=30, interval=0.05, what=f"{count} migrations to wait on the lock")


def works(dsn: str) -> None:
    """The migrated schema takes and lists a job."""
    with Queuetopia(dsn=dsn, scope="check") as topia:
        job = topia.create_job("q", "anything", {"x": 1})
        assert [j.id for j in topia.list_jobs()] == [job.id]


# -- migrate() -----------------------------------------------------------------------------


def test_migrate_is_idempotent(fresh_database: Callable[[], str]) -> None:
    dsn = fresh_database()
    with Queuetopia(dsn=dsn) as topia:
        assert topia.migrate() == VERSIONS
        assert topia.migrate() == []
    assert [v for v, _ in applied(dsn)] == VERSIONS
    works(dsn)


def test_racing_migrate_calls_in_threads_both_succeed(fresh_database: Callable[[], str]) -> None:
    dsn = fresh_database()
    holder = hold_the_migration_lock(dsn)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            with Queuetopia(dsn=dsn) as topia:
                results.append(topia.migrate())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        wait_for_waiters(holder, 2)
    finally:
        holder.close()  # releases the lock: both go, one after the other
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(results) == [[], VERSIONS]
    assert [v for v, _ in applied(dsn)] == VERSIONS
    works(dsn)


def test_racing_migrate_commands_both_succeed(fresh_database: Callable[[], str], dsn: str) -> None:
    target = fresh_database()
    holder = hold_the_migration_lock(target)
    env = cli_env(dsn)
    racers = [
        subprocess.Popen(
            [CLI, "migrate", "--dsn", target],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        wait_for_waiters(holder, 2)
    finally:
        holder.close()
    outputs = [racer.communicate(timeout=60) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    said = sorted(out.strip() for out, _ in outputs)
    assert said == [f"applied {len(VERSIONS)} migration(s)", "schema is up to date"], outputs
    assert [v for v, _ in applied(target)] == VERSIONS


# -- the command ---------------------------------------------------------------------------


def test_migrate_status_lists_each_version(fresh_database: Callable[[], str], dsn: str) -> None:
    target = fresh_database()
    env = cli_env(dsn)
    before = run_cli("migrate", "--dsn", target, "--status", env=env)
    assert before.returncode == 0, before.stderr
    assert before.stdout.split("\n")[:-1] == [f"{v:04d} pending" for v in VERSIONS]
    assert applied_or_none(target) is None  # --status changes nothing

    migrated = run_cli("migrate", "--dsn", target, env=env)
    assert migrated.returncode == 0, migrated.stderr
    after = run_cli("migrate", "--dsn", target, "--status", env=env)
    assert after.stdout.split("\n")[:-1] == [f"{v:04d} applied" for v in VERSIONS]


def applied_or_none(dsn: str) -> list[tuple[int, str]] | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT to_regclass('queuetopia_versions') IS NOT NULL").fetchone()
    return applied(dsn) if row and row[0] else None


def test_migrate_print_sql_is_up_sql(dsn: str) -> None:
    printed = run_cli("migrate", "--print-sql", env=cli_env(dsn))
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == migrations.up_sql().strip()


# -- the SQL for teams with their own migration tool -----------------------------------------


def test_up_sql_and_down_sql_leave_the_database_as_they_found_it(
    fresh_database: Callable[[], str],
) -> None:
    dsn = fresh_database()
    up, down = migrations.up_sql(), migrations.down_sql()
    assert "CREATE TABLE queuetopia_jobs" in up and "DROP TABLE" in down
    with psycopg.connect(dsn, autocommit=True) as conn:
        empty = schema_objects(conn)
        for _ in range(2):  # up, down, and once more: the cycle repeats cleanly
            with conn.transaction():
                conn.execute(up.encode())
            created = schema_objects(conn) - empty
            names = {name for _, name in created}
            for table in ("queuetopia_jobs", "queuetopia_queues", "queuetopia_leases"):
                assert f"public.{table}" in names
            assert "public.queuetopia_fence" in names
            with conn.transaction():
                conn.execute(down.encode())
            assert schema_objects(conn) == empty, schema_objects(conn) - empty


def test_rollback_all_removes_what_migrate_created(fresh_database: Callable[[], str]) -> None:
    dsn = fresh_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        empty = schema_objects(conn)
        assert migrations.migrate(conn) == VERSIONS
        assert any("queuetopia_versions" in name for _, name in schema_objects(conn) - empty)
        migrations.rollback_all(conn)
        assert schema_objects(conn) == empty
        assert migrations.applied_versions(conn) == []
        assert migrations.migrate(conn) == VERSIONS  # and it can come back
    works(dsn)


def test_a_worker_runs_on_a_schema_installed_from_up_sql(
    fresh_database: Callable[[], str],
) -> None:
    dsn = fresh_database()
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(migrations.up_sql().encode())
    ran = threading.Event()
    with Queuetopia(dsn=dsn, scope="own-migrations") as topia:
        topia.action("mark")(ran.set)
        topia.create_job("q", "mark", {})
        with topia.worker():
            assert ran.wait(10)


def test_up_sql_after_a_version_gives_only_the_newer_migrations() -> None:
    versions = [m.version for m in migrations.all_migrations()]
    assert len(versions) >= 2
    newest = migrations.all_migrations()[-1]
    assert migrations.up_sql(after=versions[-2]) == newest.up
    assert migrations.down_sql(to=versions[-2]) == newest.down
    assert migrations.up_sql(after=versions[-1]) == ""
