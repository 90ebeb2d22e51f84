"""The one place where psycopg's errors become queuetopia's (errors.py draws the
tree): every call into the driver runs inside `translate_errors`, in the store layer
(docs/design.md)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from ..errors import (
    ConfigurationError,
    ConnectionRejected,
    DatabaseConflict,
    DatabaseError,
    DatabaseReadOnly,
    DatabaseUnavailable,
    QueuetopiaError,
    SchemaError,
    StatementCancelled,
    hide_password_of,
    redact,
)

# SQLSTATEs that mean "not now" rather than "never": admin or crash shutdown, the
# server starting up or shutting down (57P0x), and the connection class (08xxx).
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03"})
_CONFLICT_STATES = frozenset({"40001", "40P01"})
# query_canceled (statement_timeout, a cancel request) and lock_not_available
# (lock_timeout). The worker's own bound on a reply, commit_timeout, cancels too, but
# its connection raises a ReplyTimeout for that first (connections.py).
_CANCELLED_STATES = frozenset({"57014", "55P03"})
_READ_ONLY_STATE = "25006"
# A refused connection carries no SQLSTATE in psycopg, only the server's message; nor
# does a DSN that libpq cannot use (a port that is not a number, an unknown sslmode).
NO_SLOT = "database unavailable: no connection slot free (its connection limit is reached)"
_REJECTED = re.compile(
    r"authentication failed|does not exist|no pg_hba\.conf entry|not permitted to log in",
    re.IGNORECASE,
)
# The server (or a role's or database's CONNECTION LIMIT) has no connection slot free:
# others hold them all (docs/deploying.md, "Out of connection slots").
_NO_SLOT = re.compile(
    r"too many clients|remaining connection slots are reserved|too many connections for",
    re.IGNORECASE,
)
_MALFORMED = re.compile(r"invalid [\w ]*value|invalid connection option", re.IGNORECASE)
# A statement named an object the database does not have: a table or sequence, a
# column, a function, a type (`_schema_error`).
_UNDEFINED_STATES = frozenset({"42P01", "42703", "42883", "42704"})
_UNDEFINED_COLUMN = "42703"
_OWN_OBJECT = re.compile(r"\bqueuetopia_\w+")


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise psycopg errors as queuetopia errors, chained, with passwords hidden.

    Everything that a retry can cure is a DatabaseUnavailable (or a DatabaseConflict),
    so the worker's bookkeeping retries it: a lost connection, a server shutting down
    or starting, a database that accepts no writes right now (docs/reliability.md)."""
    try:
        yield
    except psycopg.Error as exc:
        raise _translated(exc) from exc


def _translated(exc: psycopg.Error) -> QueuetopiaError:
    state = exc.sqlstate or ""
    if state in _CONFLICT_STATES:
        return DatabaseConflict(redact(f"database conflict: {exc}".strip()))
    if state in _CANCELLED_STATES:
        return StatementCancelled(redact(f"statement cancelled: {exc}".strip()))
    if state == _READ_ONLY_STATE:
        return DatabaseReadOnly(redact(f"database is read-only right now: {exc}".strip()))
    if isinstance(exc, psycopg.OperationalError) and not state:
        if _MALFORMED.search(str(exc)):
            return ConfigurationError(redact(f"unusable DSN: {exc}".strip()))
        if _REJECTED.search(str(exc)):
            return ConnectionRejected(redact(f"database refused the connection: {exc}".strip()))
        if _NO_SLOT.search(str(exc)):
            return DatabaseUnavailable(redact(f"{NO_SLOT}: {exc}".strip()))
    if (
        isinstance(exc, psycopg.OperationalError)
        or state in _UNAVAILABLE_STATES
        or state.startswith("08")
    ):
        return DatabaseUnavailable(redact(f"database unavailable: {exc}".strip()))
    return _schema_error(exc) or DatabaseError(redact(f"database error: {exc}".strip()))


def _schema_error(exc: psycopg.Error) -> SchemaError | None:
    """A statement met no queuetopia table, column or function: the schema is missing
    or behind (docs/migrations.md). Which of the two, `schema_explained` says, where the
    connection is known; a column's message may not name its table, so any missing
    column counts here, and `schema_explained` lets it go if the schema is current."""
    state = exc.sqlstate or ""
    if state not in _UNDEFINED_STATES:
        return None
    if state != _UNDEFINED_COLUMN and not _OWN_OBJECT.search(str(exc)):
        return None
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else state
    return SchemaError(f"{SchemaError.problem} ({redact(first)})")


# What the versions table says is wrong with the schema of `conn`'s database: a
# SchemaNotInstalled or SchemaOutdated, or None when it is current
# (`migrations.schema_problem`, which the facade hands to the pools).
Diagnose = Callable[[Any], SchemaError | None]


@contextmanager
def schema_explained(conn: Any, diagnose: Diagnose | None) -> Iterator[None]:
    """Turn the SchemaError of `translate_errors` into what `diagnose` finds on `conn`:
    not installed, or at version N where M is needed. It runs only when such an error
    occurs, so no enqueue pays a round trip for it. A current schema means the missing
    object was someone else's: a plain DatabaseError again. Without `diagnose`, or
    when it fails, the SchemaError stays as it is (it names the fix too)."""
    try:
        with translate_errors():  # statements run on `conn` directly are translated too
            yield
    except SchemaError as exc:
        cause = exc.__cause__
        if type(exc) is not SchemaError or not isinstance(cause, psycopg.Error) or not diagnose:
            raise
        try:
            problem = diagnose(conn)
        except Exception:  # an error path already: the message then says less, no more
            raise exc from cause
        if problem is None:
            raise DatabaseError(redact(f"database error: {cause}".strip())) from cause
        raise problem from cause


@contextmanager
def connecting(dsn: str) -> Iterator[None]:
    """`translate_errors`, for opening connections to `dsn`: libpq's message about a DSN
    it cannot parse quotes fragments of it, the password's too. Those are hidden, and
    then the psycopg error (which has them) is not chained (docs/security.md)."""
    try:
        with translate_errors():
            yield
    except UnicodeError:
        # psycopg resolves host names itself; one that IDNA cannot encode raises this.
        raise ConfigurationError("the DSN's host name is not a valid host name") from None
    except QueuetopiaError as exc:
        unparsable = isinstance(exc.__cause__, psycopg.ProgrammingError)
        hidden = hide_password_of(dsn, str(exc), unparsable)
        if hidden == str(exc):
            raise
        raise type(exc)(hidden) from None
