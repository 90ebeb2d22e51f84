"""Shared fixtures: one real PostgreSQL for the session (QUEUETOPIA_TEST_DSN, else an
embedded server in a temporary directory), migrated once; a fresh scope per test, or
fresh empty databases on that server."""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from queuetopia import Queuetopia
from queuetopia.db.connections import Database
from queuetopia.migrations import up_sql

from .helpers import fast_settings


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """Commands run in-process (CLI tests) configure the queuetopia loggers; give the
    next test the loggers as they were."""
    loggers = [logging.getLogger(name) for name in ("queuetopia", "pgserver", "psycopg")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers, lg.level, lg.propagate = handlers, level, propagate


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    configured = os.environ.get("QUEUETOPIA_TEST_DSN")
    if configured:
        _prepare(configured)
        yield configured
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        directory = Path(tempfile.mkdtemp(prefix="queuetopia-test-"))
        server = pgserver.get_server(directory, cleanup_mode="delete")
    uri = str(server.get_uri())
    _prepare(uri)
    os.environ["QUEUETOPIA_TEST_DSN"] = uri  # subprocesses started by tests find it
    yield uri
    os.environ.pop("QUEUETOPIA_TEST_DSN", None)


def _prepare(uri: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        Queuetopia(dsn=uri).migrate()
        conn.execute("SELECT 1")


@pytest.fixture
def make_topia(dsn: str) -> Iterator[Callable[..., Queuetopia]]:
    """A factory of topias on the test database, each in a scope of its own."""
    made: list[Queuetopia] = []

    def make(**kwargs: Any) -> Queuetopia:
        settings = {**fast_settings(), **kwargs}
        settings.setdefault("scope", f"test-{uuid.uuid4().hex[:10]}")
        topia = Queuetopia(dsn=dsn, **settings)
        made.append(topia)
        return topia

    yield make
    for topia in made:
        topia.close()


@pytest.fixture
def topia(make_topia: Callable[..., Queuetopia]) -> Queuetopia:
    return make_topia()


@pytest.fixture
def fresh_database(dsn: str) -> Iterator[Callable[[], str]]:
    """A factory of empty databases on the test server; each is dropped at the end."""
    made: list[str] = []

    def make() -> str:
        name = f"qt_fresh_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return make_conninfo(dsn, dbname=name)

    yield make
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in made:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain autocommit connection for looking at the tables directly."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def schema_conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A worker's connection to a fresh, empty install in a schema of its own."""
    schema = f"plans_{uuid.uuid4().hex[:8]}"
    with Database(dsn).connect_worker() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
        conn.execute(f'SET search_path = "{schema}"'.encode())
        conn.execute(up_sql().encode(), prepare=False)
        try:
            yield conn
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())
