"""What "the database is not available right now" means (docs/reliability.md): every
error a retry can cure becomes a DatabaseUnavailable (or a DatabaseConflict), which the
worker's bookkeeping retries and a producer can tell from a real failure."""

from __future__ import annotations

import psycopg
import pytest

from queuetopia import (
    ConfigurationError,
    ConnectionRejected,
    DatabaseConflict,
    DatabaseError,
    DatabaseReadOnly,
    DatabaseUnavailable,
    Queuetopia,
)
from queuetopia.db.translate import translate_errors


def test_a_read_only_database_refuses_an_enqueue_with_a_clear_error(
    dsn: str, topia: Queuetopia
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = on")
        with pytest.raises(DatabaseReadOnly, match="read-only") as raised:
            topia.create_job("q", "anything", connection=conn)
        assert isinstance(raised.value, DatabaseUnavailable)
        assert isinstance(raised.value.__cause__, psycopg.errors.ReadOnlySqlTransaction)
    assert topia.list_jobs() == []


def test_an_administrator_shutdown_of_the_session_is_unavailable(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(DatabaseUnavailable) as raised, translate_errors():
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        assert type(raised.value) is DatabaseUnavailable


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("SELECT 1/0", DatabaseError),
        ("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001'; END $$", DatabaseConflict),
        ("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40P01'; END $$", DatabaseConflict),
        ("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '57P03'; END $$", DatabaseUnavailable),
        ("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '08006'; END $$", DatabaseUnavailable),
        ("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '25006'; END $$", DatabaseReadOnly),
    ],
)
def test_each_sqlstate_is_translated_to_its_kind(
    dsn: str, statement: str, kind: type[Exception]
) -> None:
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        pytest.raises(DatabaseError) as raised,
        translate_errors(),
    ):
        conn.execute(statement)
    assert type(raised.value) is kind


def test_a_refused_login_is_a_rejected_connection(dsn: str) -> None:
    bad = psycopg.conninfo.make_conninfo(dsn, dbname="no_such_database_here")
    with pytest.raises(ConnectionRejected, match="does not exist"):
        Queuetopia(dsn=bad).get_job(1)


@pytest.mark.parametrize("option", ["port=notaport", "sslmode=bogus"])
def test_a_dsn_libpq_cannot_use_is_a_configuration_error(dsn: str, option: str) -> None:
    """Not worth waiting for: a starting worker fails at once (docs/deploying.md)."""
    bad = f"{dsn}&{option}" if "?" in dsn else f"{dsn}?{option}"
    with pytest.raises(ConfigurationError, match="unusable DSN"):
        Queuetopia(dsn=bad).get_job(1)
