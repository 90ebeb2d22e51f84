"""A database without the queuetopia schema, or with an older version of it, says so
and how to fix it, from every producer and operator call (docs/migrations.md). Each
test works in an empty database of its own on the test server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from queuetopia import DatabaseError, JobRequest, Queuetopia, migrations
from queuetopia.errors import SchemaError, SchemaNotInstalled, SchemaOutdated

NOT_INSTALLED = (
    "the queuetopia schema is not installed in this database: "
    "run `queuetopia migrate APP` or `topia.migrate()`"
)
LATEST = migrations.all_migrations()[-1].version

Calls = dict[str, Callable[[Queuetopia], Any]]


@pytest.fixture
def empty(fresh_database: Callable[[], str]) -> Iterator[Queuetopia]:
    """A topia on a database where the schema was never installed."""
    with Queuetopia(dsn=fresh_database(), scope="shop", pool_size=2) as topia:

        @topia.action("send_mail")
        def send_mail(to: str) -> None: ...

        yield topia


def migrated_to(dsn: str, version: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert migrations.migrate(conn, upto=version) == list(range(1, version + 1))


PRODUCERS: Calls = {
    "delay": lambda t: t.actions["send_mail"].delay("q", to="a@x"),
    "delay_many": lambda t: t.actions["send_mail"].delay_many("q", [{"to": "a@x"}]),
    "create_job": lambda t: t.create_job("q", "anything", {}),
    "enqueue_many": lambda t: t.enqueue_many([JobRequest("q", "send_mail", {"to": "a@x"})]),
    "delay_async": lambda t: asyncio.run(t.actions["send_mail"].delay_async("q", to="a@x")),
    "create_job_async": lambda t: asyncio.run(_create_job_async(t)),
}
OPERATORS: Calls = {
    "get_job": lambda t: t.get_job(1),
    "list_jobs": lambda t: t.list_jobs(),
    "list_queues": lambda t: t.list_queues(),
    "pause_queue": lambda t: t.pause_queue("q"),
    "retry_job": lambda t: t.retry_job(1),
    "prune": lambda t: t.prune(),
}


async def _create_job_async(topia: Queuetopia) -> Any:
    try:
        return await topia.create_job_async("q", "anything", {})
    finally:
        await topia.close_async_pool()


@pytest.mark.parametrize("call", sorted({**PRODUCERS, **OPERATORS}))
def test_every_call_on_a_database_without_the_schema_says_how_to_install_it(
    empty: Queuetopia, call: str
) -> None:
    with pytest.raises(SchemaNotInstalled) as raised:
        {**PRODUCERS, **OPERATORS}[call](empty)
    assert str(raised.value) == NOT_INSTALLED
    assert isinstance(raised.value, DatabaseError)  # what callers caught before
    # What the database said first: a table or a function of the schema is missing.
    missing = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction)
    assert isinstance(raised.value.__cause__, missing)


def test_an_enqueue_in_the_callers_aborted_transaction_says_so_too(empty: Queuetopia) -> None:
    with psycopg.connect(empty.dsn) as conn:  # not autocommit: the error aborts it
        send_mail = empty.actions["send_mail"].options(connection=conn)
        with pytest.raises(SchemaNotInstalled):
            send_mail.delay("q", to="a@x")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR


@pytest.mark.parametrize("call", ["delay", "enqueue_many", "list_jobs"])
def test_an_older_schema_says_its_version_and_the_one_needed(empty: Queuetopia, call: str) -> None:
    migrated_to(empty.dsn, 1)
    with pytest.raises(SchemaOutdated) as raised:
        {**PRODUCERS, **OPERATORS}[call](empty)
    assert str(raised.value) == (
        f"the queuetopia schema is at version 1, this library needs {LATEST}: "
        "run `queuetopia migrate APP` or `topia.migrate()`"
    )
    assert (raised.value.applied, raised.value.needed) == (1, LATEST)


def test_after_migrate_the_same_call_works(empty: Queuetopia) -> None:
    with pytest.raises(SchemaNotInstalled):
        empty.create_job("q", "anything", {})
    assert empty.migrate() == [m.version for m in migrations.all_migrations()]
    assert empty.create_job("q", "anything", {}).id == 1


def test_the_versions_are_read_with_the_dsns_own_options(
    fresh_database: Callable[[], str],
) -> None:
    """The schema lives in a schema of its own that only the DSN's search_path
    names: the versions are read there too, not in `public`."""
    database = fresh_database()
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA jobs")
    in_jobs = make_conninfo(database, options="-c search_path=jobs")
    migrated_to(in_jobs, 1)
    with (
        Queuetopia(dsn=in_jobs, pool_size=1) as topia,
        pytest.raises(SchemaOutdated, match="at version 1"),
    ):
        topia.create_job("q", "anything", {})


def test_someone_elses_missing_table_or_column_stays_a_database_error(
    topia: Queuetopia,
) -> None:
    """On an up-to-date schema, an undefined object is not queuetopia's to explain."""
    for statement in ("SELECT * FROM no_such_table", "SELECT no_such_column FROM pg_class"):
        with pytest.raises(DatabaseError) as raised, topia.connection() as conn:
            conn.execute(statement)
        assert not isinstance(raised.value, SchemaError)
        assert "does not exist" in str(raised.value)


def test_when_the_versions_cannot_be_read_the_error_still_says_what_to_run(
    empty: Queuetopia, dsn: str
) -> None:
    """The versions are read on a connection of their own; a database that takes no
    new connection leaves the message without a version, not without its fix."""
    empty.notify()  # the pool holds its connection now
    name = sql.Identifier(conninfo_to_dict(empty.dsn)["dbname"])
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        try:
            with pytest.raises(SchemaError) as raised:
                empty.create_job("q", "anything", {})
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
    assert type(raised.value) is SchemaError
    assert str(raised.value).startswith(
        "the queuetopia schema in this database is missing or older than this library needs ("
    )
    assert "queuetopia_" in str(raised.value)  # the missing relation or function
    assert str(raised.value).endswith(": run `queuetopia migrate APP` or `topia.migrate()`")
