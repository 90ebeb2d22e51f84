"""Scopes as a boundary (docs/security.md): with the opt-in row-level security of
`queuetopia migrate --print-rls` installed, a role set up for scope A works its scope
fully and gets nothing, or an error, for scope B. Two real roles on the real server,
in a database of this module's own; the roles and the database are dropped after."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from queuetopia import (
    DatabaseError,
    JobNotFound,
    JobState,
    Queuetopia,
    ValidationError,
    migrations,
)
from queuetopia.testing import drain
from queuetopia_cli.main import app

from .helpers import fast_settings, wait_for

Conn = psycopg.Connection[Any]
# Odd on purpose: quotes, spaces and capitals must survive the printed SQL.
SCOPE_A = "tenant A's 🚀"
SCOPE_B = "tenant-b"


@dataclass(frozen=True)
class Setup:
    owner: str  # the DSN of the tables' owner (bypasses row-level security)
    a: str  # the DSN of the role set up for SCOPE_A
    b: str  # the DSN of the role set up for SCOPE_B


def run_script(dsn: str, script: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(script.encode("utf-8"))


def printed_rls(*args: str) -> str:
    result = CliRunner().invoke(app, ["migrate", "--print-rls", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def create_database(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("row-level security tests need a role that may create databases")
    return make_conninfo(admin, dbname=name)


def drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def setup(dsn: str) -> Iterator[Setup]:
    tag = uuid.uuid4().hex[:8]
    name = f"qt_rls_{tag}"
    roles = {SCOPE_A: f'Qt "RLS" a {tag}', SCOPE_B: f"qt_rls_b_{tag}"}
    password = uuid.uuid4().hex
    owner = create_database(dsn, name)
    made: list[str] = []
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for role in roles.values():
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(password)
                    )
                )
                made.append(role)
        with Queuetopia(dsn=owner) as installer:  # closed: its pool is not left to the GC
            installer.migrate()
        for scope, role in roles.items():
            run_script(owner, printed_rls("--role", role, "--scope", scope))
        yield Setup(
            owner,
            *(make_conninfo(owner, user=roles[s], password=password) for s in (SCOPE_A, SCOPE_B)),
        )
    finally:
        drop_database(dsn, name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            for role in made:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def topias() -> Iterator[Callable[[str, str], Queuetopia]]:
    made: list[Queuetopia] = []

    def make(dsn: str, scope: str) -> Queuetopia:
        topia = Queuetopia(dsn=dsn, scope=scope, **fast_settings())

        @topia.action("ok")
        def ok(n: int = 0) -> int:
            return n

        @topia.action("fail", max_attempts=1)
        def fail() -> None:
            raise RuntimeError("no")

        made.append(topia)
        return topia

    yield make
    for topia in made:
        topia.close()


def owner_rows(setup: Setup, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(setup.owner, autocommit=True) as conn:
        return conn.execute(query.encode(), params).fetchall()


def test_a_role_works_its_own_scope_fully(
    setup: Setup, topias: Callable[[str, str], Queuetopia]
) -> None:
    """Enqueue, a worker runs jobs, list, inspect, retry, cancel, pause, resume, prune."""
    topia = topias(setup.a, SCOPE_A)
    done = topia.actions["ok"].delay("q", n=1)
    failing = topia.actions["fail"].delay("f")
    with topia.worker():
        wait_for(lambda: topia.get_job(done.id).state == JobState.DONE)
        wait_for(lambda: topia.get_job(failing.id).state == JobState.FAILED)
    assert topia.get_job(done.id).result == 1
    assert {j.id for j in topia.list_jobs()} == {done.id, failing.id}
    assert {q.queue for q in topia.list_queues()} == {"q", "f"}
    assert topia.retry_job(failing.id).state == JobState.PENDING
    assert topia.cancel_job(failing.id).state == JobState.CANCELLED
    later = topia.actions["ok"].schedule("q", at=timedelta(hours=1))
    topia.pause_queue("q")
    assert [q.status for q in topia.list_queues() if q.queue == "q"] == ["paused"]
    topia.resume_queue("q")
    assert topia.prune(older_than=0.000001) == 2  # the done and the cancelled job
    assert [j.id for j in topia.list_jobs()] == [later.id]


@pytest.fixture
def scope_b_busy(
    setup: Setup, topias: Callable[[str, str], Queuetopia]
) -> Iterator[dict[str, Any]]:
    """Scope B as its own role made it: a done job, a pending one and one running under
    a live lease (its worker waits for the test to let it finish)."""
    topia = topias(setup.b, SCOPE_B)
    release = threading.Event()

    @topia.action("hold")
    def hold() -> None:
        release.wait(30)

    done = topia.actions["ok"].delay("b-done")
    drain(topia)
    running = topia.actions["hold"].delay("b-secret-queue")
    pending = topia.actions["ok"].delay("b-secret-queue")
    with topia.worker():
        wait_for(lambda: topia.get_job(running.id).state == JobState.RUNNING)
        yield {"done": done, "running": running, "pending": pending, "topia": topia}
        release.set()


def test_a_role_gets_nothing_of_another_scope(
    setup: Setup, topias: Callable[[str, str], Queuetopia], scope_b_busy: dict[str, Any]
) -> None:
    """Role A pointed at scope B: lists are empty, a job of B is not found, retry and
    cancel say so, enqueue and pause are refused, prune deletes nothing, and a worker
    runs nothing."""
    intruder = topias(setup.a, SCOPE_B)
    pending, done = scope_b_busy["pending"], scope_b_busy["done"]
    assert intruder.list_jobs() == []
    assert intruder.list_queues() == []
    assert intruder.get_job(pending.id) is None
    for verb in (intruder.retry_job, intruder.cancel_job):
        with pytest.raises(JobNotFound):
            verb(pending.id)
    with pytest.raises(DatabaseError, match="row-level security"):
        intruder.actions["ok"].delay("b-secret-queue")
    with pytest.raises(DatabaseError, match="row-level security"):
        intruder.pause_queue("b-secret-queue")
    assert intruder.prune(older_than=0.000001) == 0
    assert drain(intruder).jobs == ()
    seen = owner_rows(
        setup, "SELECT state, attempts FROM queuetopia_jobs WHERE id = %s", pending.id
    )
    assert seen == [("pending", 0)]
    assert owner_rows(setup, "SELECT state FROM queuetopia_jobs WHERE id = %s", done.id) == [
        ("done",)
    ]


def test_a_role_sees_no_row_of_another_scope_in_any_table(
    setup: Setup, topias: Callable[[str, str], Queuetopia], scope_b_busy: dict[str, Any]
) -> None:
    """Plain SQL as role A, around the library: not B's jobs, queues or live lease, and
    no way to map itself to B."""
    topias(setup.a, SCOPE_A).actions["ok"].delay("a-queue")
    live = "SELECT count(*) FROM queuetopia_leases WHERE scope = %s AND locked_until > now()"
    assert owner_rows(setup, live, SCOPE_B)[0] == (1,)
    with psycopg.connect(setup.a, autocommit=True) as conn:
        for table in ("queuetopia_jobs", "queuetopia_queues", "queuetopia_leases"):
            scopes = conn.execute(
                sql.SQL("SELECT DISTINCT scope FROM {}").format(sql.Identifier(table))
            ).fetchall()
            assert set(scopes) <= {(SCOPE_A,)}, table
        changed = conn.execute(
            "UPDATE queuetopia_jobs SET state = 'done' WHERE scope = %s", (SCOPE_B,)
        )
        assert changed.rowcount == 0
        gone = conn.execute("DELETE FROM queuetopia_leases WHERE scope = %s", (SCOPE_B,))
        assert gone.rowcount == 0
        assert conn.execute("SELECT scope FROM queuetopia_scope_roles").fetchall() == [(SCOPE_A,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO queuetopia_scope_roles VALUES (current_user::regrole, %s)",
                (SCOPE_B,),
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER TABLE queuetopia_jobs DISABLE ROW LEVEL SECURITY")
    assert owner_rows(
        setup, "SELECT state FROM queuetopia_jobs WHERE id = %s", scope_b_busy["running"].id
    ) == [("running",)]


def test_listen_reveals_the_queue_names_of_every_scope(
    setup: Setup, topias: Callable[[str, str], Queuetopia]
) -> None:
    """A limit of the boundary, as docs/security.md says: notifications are not rows.
    Any role that may connect can LISTEN and sees which queues of other scopes get jobs."""
    with psycopg.connect(setup.a, autocommit=True) as listener:
        listener.execute("LISTEN queuetopia")
        topias(setup.b, SCOPE_B).actions["ok"].delay("b-payroll")
        payloads = [json.loads(n.payload) for n in listener.notifies(timeout=10, stop_after=1)]
    assert payloads == [[SCOPE_B, "b-payroll"]]


def test_every_table_with_a_scope_has_a_policy(setup: Setup) -> None:
    """A table a later migration adds with a scope column must be added to
    migrations/optional/rls.up.sql, or it would be the hole in the boundary."""
    rows = owner_rows(
        setup,
        """
        SELECT c.relname, c.relrowsecurity,
               EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
          FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
         WHERE c.relname LIKE 'queuetopia%%' AND c.relkind = 'r'
           AND a.attname = 'scope' AND NOT a.attisdropped
         ORDER BY 1
        """,
    )
    assert len(rows) >= 5
    assert [r for r in rows if not (r[1] and r[2])] == []


def test_print_rls_is_rls_sql(dsn: str) -> None:
    assert printed_rls().strip() == migrations.rls_sql().strip()
    script = printed_rls("--role", "app_a", "--scope", "A", "--scope", "B's")
    assert script.strip() == migrations.rls_sql("app_a", ["A", "B's"]).strip()
    assert 'TO "app_a"' in script and "'{A,B''s}'::text[]" in script
    for args in (["--role", "app_a"], ["--scope", "A"], ["--print-rls", "--scope", "A"]):
        result = CliRunner().invoke(app, ["migrate", *args])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    with pytest.raises(ValidationError):
        migrations.rls_sql("app_a", ["bad\x00scope"])


def test_down_sql_removes_row_level_security_with_the_rest(dsn: str) -> None:
    name = f"qt_rls_down_{uuid.uuid4().hex[:8]}"
    target = create_database(dsn, name)
    try:
        with psycopg.connect(target, autocommit=True) as conn:
            empty = objects(conn)
            migrations.migrate(conn)
            installed = objects(conn)
            for _ in range(2):  # installing twice is harmless
                run_script(target, migrations.rls_sql())
            assert rls_state(conn) == (True, len(scoped_tables(conn)))
            run_script(target, migrations.rls_down_sql())  # row-level security only
            assert rls_state(conn) == (False, 0) and objects(conn) == installed
            run_script(target, migrations.rls_sql())
            run_script(target, migrations.down_sql())
            assert objects(conn) == empty
    finally:
        drop_database(dsn, name)


def objects(conn: Conn) -> set[str]:
    rows = conn.execute(
        "SELECT relname FROM pg_class WHERE relname LIKE 'queuetopia%%'"
        " UNION ALL SELECT polname FROM pg_policy"
    ).fetchall()
    return {r[0] for r in rows}


def scoped_tables(conn: Conn) -> list[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
        " WHERE c.relname LIKE 'queuetopia%%' AND c.relkind = 'r' AND a.attname = 'scope'"
    ).fetchall()
    return [r[0] for r in rows]


def rls_state(conn: Conn) -> tuple[bool, int]:
    """(is row-level security on for any queuetopia table, how many policies exist)."""
    row = conn.execute(
        "SELECT bool_or(relrowsecurity), (SELECT count(*) FROM pg_policy)"
        "  FROM pg_class WHERE relname LIKE 'queuetopia%%' AND relkind = 'r'"
    ).fetchone()
    assert row is not None
    return bool(row[0]), int(row[1])
