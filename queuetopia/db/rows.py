"""Running one statement and reading its rows: the one way the database layer talks
to psycopg (errors translated, rows as dicts with names read once per statement,
JSON decoded by our own loaders)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg import AsyncClientCursor, pq
from psycopg.rows import tuple_row
from psycopg.types.json import JsonbLoader, JsonLoader

from ..models import Job, job_from_row
from .translate import translate_errors

Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]


@contextmanager
def transaction(conn: Conn) -> Iterator[Conn]:
    """A transaction on `conn` (a savepoint inside the caller's), for the calls that
    must write together; errors translated."""
    with translate_errors(), conn.transaction():
        yield conn


@contextmanager
def joined_transaction(conn: Conn) -> Iterator[Conn]:
    """`transaction`, inside the caller's transaction when `conn` is theirs and not in
    autocommit: a transaction of our own on it would commit theirs, so theirs is begun
    first (a savepoint in it then)."""
    if not conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE:
        conn.execute("SELECT 1")
    with transaction(conn):
        yield conn


@asynccontextmanager
async def joined_transaction_async(conn: AsyncConn) -> AsyncIterator[AsyncConn]:
    """`joined_transaction` for async code."""
    if not conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE:
        await conn.execute("SELECT 1")
    with translate_errors():
        async with conn.transaction():
            yield conn


_JSON_OIDS = (psycopg.postgres.types["jsonb"].oid, psycopg.postgres.types["json"].oid)


def _own_loaders(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> None:
    """Decode JSON ourselves: a caller's connection (Django's, for one) may have loaders
    of its own that return JSON as text. Checking first is cheaper than registering."""
    adapters = cur.connection.adapters
    jsonb, json_ = (adapters.get_loader(oid, pq.Format.TEXT) for oid in _JSON_OIDS)
    if jsonb is JsonbLoader and json_ is JsonLoader:
        return
    cur.adapters.register_loader("jsonb", JsonbLoader)
    cur.adapters.register_loader("json", JsonLoader)


# The column names of each statement's result. Every statement is a constant of
# queries.py, so this stays small; psycopg's dict rows read them from a description
# built anew for every result, a fifth of the client time of a worker's batch
# (docs/performance.md).
_names: dict[str, tuple[str, ...]] = {}


def _names_of(
    cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any], statement: str
) -> tuple[str, ...] | None:
    """The result's column names, or None when the statement returned no rows."""
    result = cur.pgresult
    if result is None or result.status != pq.ExecStatus.TUPLES_OK:
        return None
    names = _names.get(statement)
    if names is None:
        names = _names[statement] = tuple(column.name for column in cur.description or ())
    return names


def fetch(conn: Conn, statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with translate_errors(), conn.cursor(row_factory=tuple_row) as cur:
        _own_loaders(cur)
        cur.execute(statement, params)
        names = _names_of(cur, statement)
        return (
            [] if names is None else [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        )


def job_of(row: dict[str, Any]) -> Job:
    # An empty log comes back as NULL (sql/*.sql): left out, the model's default (an
    # empty list) applies without a validator call, twice per claimed job.
    if row.get("attempt_log", 0) is None:
        del row["attempt_log"]
    if row.get("operator_log", 0) is None:
        del row["operator_log"]
    if row.get("depends_on", 0) is None:
        del row["depends_on"]
    return job_from_row(row)


async def fetch_async(
    conn: AsyncConn, statement: str, params: dict[str, Any], *, client_side: bool = False
) -> list[dict[str, Any]]:
    """With `client_side`, the parameters are bound into the statement's text by the
    client and it goes as a simple query: the way to EXECUTE a statement prepared by
    name, as utility statements take no bind parameters."""
    cursor = AsyncClientCursor(conn, row_factory=tuple_row) if client_side else None
    with translate_errors():
        async with cursor or conn.cursor(row_factory=tuple_row) as cur:
            _own_loaders(cur)
            await cur.execute(statement, params, prepare=False if client_side else None)
            names = _names_of(cur, statement)
            return (
                []
                if names is None
                else [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]
            )
