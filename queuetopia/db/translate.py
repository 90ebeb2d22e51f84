"""The one place where psycopg's errors become queuetopia's (errors.py draws the
tree): every call into the driver runs inside `translate_errors`, in the store layer
(docs/design.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from ..errors import (
    ConfigurationError,
    ConnectionRejected,
    DatabaseConflict,
    DatabaseError,
    DatabaseReadOnly,
    DatabaseUnavailable,
    QueuetopiaError,
    hide_password_of,
    redact,
)

# SQLSTATEs that mean "not now" rather than "never": admin or crash shutdown, the
# server starting up or shutting down (57P0x), and the connection class (08xxx).
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03"})
_CONFLICT_STATES = frozenset({"40001", "40P01"})
_READ_ONLY_STATE = "25006"
# A refused connection carries no SQLSTATE in psycopg, only the server's message; nor
# does a DSN that libpq cannot use (a port that is not a number, an unknown sslmode).
_REJECTED = re.compile(
    r"authentication failed|does not exist|no pg_hba\.conf entry|not permitted to log in",
    re.IGNORECASE,
)
_MALFORMED = re.compile(r"invalid [\w ]*value|invalid connection option", re.IGNORECASE)


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
    if state == _READ_ONLY_STATE:
        return DatabaseReadOnly(redact(f"database is read-only right now: {exc}".strip()))
    if isinstance(exc, psycopg.OperationalError) and not state:
        if _MALFORMED.search(str(exc)):
            return ConfigurationError(redact(f"unusable DSN: {exc}".strip()))
        if _REJECTED.search(str(exc)):
            return ConnectionRejected(redact(f"database refused the connection: {exc}".strip()))
    if (
        isinstance(exc, psycopg.OperationalError)
        or state in _UNAVAILABLE_STATES
        or state.startswith("08")
    ):
        return DatabaseUnavailable(redact(f"database unavailable: {exc}".strip()))
    return DatabaseError(redact(f"database error: {exc}".strip()))


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
