"""The exception tree. Every error queuetopia raises is a QueuetopiaError::

    QueuetopiaError
     ├── ValidationError        bad input: names, params, options (also a ValueError)
     ├── ConfigurationError     no usable database configuration (a DSN libpq cannot use)
     ├── DatabaseError          PostgreSQL failed; the psycopg error is chained
     │    ├── DatabaseUnavailable   could not connect, the connection broke, or the
     │    │    │                    database cannot take this work right now
     │    │    ├── DatabaseReadOnly      it accepts no writes now (a standby, read-only mode)
     │    │    ├── StatementCancelled    past statement_timeout or lock_timeout, or
     │    │    │                         cancelled: nothing written; a retry helps
     │    │    └── ConnectionRejected    it refused this configuration: failed
     │    │                              authentication, unknown database or role
     │    ├── DatabaseConflict      a deadlock or serialization failure; a retry helps
     │    └── SchemaError           queuetopia's tables are missing or older than this
     │         │                    library needs: run `queuetopia migrate APP`
     │         ├── SchemaNotInstalled    no queuetopia schema in this database
     │         └── SchemaOutdated        an older version of it (`applied`, `needed`)
     ├── JobNotFound            no job with that id in this scope (also a LookupError)
     ├── InvalidTransition      the operator call makes no sense for the job's state
     ├── JobTimeout             raised inside an action that ran past its timeout
     └── JobUnsuccessful        `wait` found the job ended without a result
          ├── JobFailed             it failed for good (attempts used up, or parked)
          └── JobCancelled          an operator cancelled it

Driver errors are translated in exactly one place, `translate.translate_errors`, at
the edge of the store layer (docs/design.md).
"""

from __future__ import annotations

import ast
import re


class QueuetopiaError(Exception):
    """Queuetopia failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ValidationError(QueuetopiaError, ValueError):
    """Invalid input; nothing was written."""

    def __init__(self, message: str | None = None, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


class ConfigurationError(QueuetopiaError):
    """No usable database configuration."""


class DatabaseError(QueuetopiaError):
    """The database reported an error."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached."""


class DatabaseReadOnly(DatabaseUnavailable):
    """The database accepts no writes right now (a standby after a failover, or
    default_transaction_read_only); a retry helps once it does."""


class ConnectionRejected(DatabaseUnavailable):
    """The database refused the connection: failed authentication, unknown database or
    role. A running worker still waits for it (a password being rotated); a worker
    that is starting fails at once, since it is most likely a configuration error."""


class DatabaseConflict(DatabaseError):
    """The database aborted the statement over a conflict; retrying it helps."""


class StatementCancelled(DatabaseUnavailable):
    """The statement was cancelled before it committed: it ran past the session's
    `statement_timeout` or `lock_timeout` (a DBA's setting on the role, say), or
    someone cancelled it (`pg_cancel_backend`). Nothing was written; retrying it helps
    once whatever held it up is gone (docs/postgresql.md, "Settings")."""


class SchemaError(DatabaseError):
    """The queuetopia schema in this database is missing or older than this library
    needs (docs/migrations.md). The message says which, and how to fix it."""

    problem = "the queuetopia schema in this database is missing or older than this library needs"

    def __init__(self, problem: str | None = None) -> None:
        if problem:
            self.problem = problem
        super().__init__(self.advice())

    def advice(self, command: str = "queuetopia migrate APP") -> str:
        """The problem and its fix; the CLI names the command as its user types it."""
        return f"{self.problem}: run `{command}` or `topia.migrate()`"


class SchemaNotInstalled(SchemaError):
    """The queuetopia schema is not installed in this database."""

    problem = "the queuetopia schema is not installed in this database"


class SchemaOutdated(SchemaError):
    """The queuetopia schema in this database is older than this library needs:
    `applied` is its version, `needed` the library's."""

    applied: int | None = None
    needed: int | None = None

    @classmethod
    def of(cls, applied: int, needed: int) -> SchemaOutdated:
        error = cls(f"the queuetopia schema is at version {applied}, this library needs {needed}")
        error.applied, error.needed = applied, needed
        return error


class JobNotFound(QueuetopiaError, LookupError):
    """No such job in this scope."""

    @classmethod
    def of(cls, job_id: int, scope: str) -> JobNotFound:
        return cls(f"no job {job_id} in scope {scope!r}")


class InvalidTransition(QueuetopiaError):
    """The job is not in a state that allows this."""


class JobTimeout(QueuetopiaError):
    """The job ran past its timeout."""


class JobUnsuccessful(QueuetopiaError):
    """The job ended without a result."""

    def __init__(self, job_id: int, state: str, error: str | None) -> None:
        first = (error or "").strip().splitlines()
        reason = f": {first[0]}" if first else ""
        super().__init__(f"job {job_id} is {state}{reason}")
        self.job_id = job_id
        self.state = state
        self.error = error


class JobFailed(JobUnsuccessful):
    """The job failed for good: its attempts are used up, or it was parked."""


class JobCancelled(JobUnsuccessful):
    """The job was cancelled."""


# A quoted value as libpq (single quotes, backslash escapes), a shell or Python's repr
# writes it; an unclosed quote runs to the end of the text (hidden whole, not leaked).
_QUOTED = r"""'(?:[^'\\]|\\.)*(?:'|$)|"(?:[^"\\]|\\.)*(?:"|$)"""
_PASSWORD = re.compile(
    # PGPASSWORD=... as an environment listing shows it: the rest of the line
    r"(?P<env>\bPGPASSWORD=)[^\n]*"
    # password=..., sslpassword=... (keyword DSNs, URI query strings)
    rf"|(?P<keyword>password\s*=\s*)(?:{_QUOTED}|\S+)"
    # 'password': '...', "PGPASSWORD": "..." (a repr'd dict or environ, JSON)
    rf"|(?P<mapping>['\"]\w*password['\"]\s*:\s*)(?:{_QUOTED}|[^\s,}}]+)"
    # scheme://user:password@host: up to the last @ of the URI, since a password that
    # was not percent-encoded may hold @, : or / itself
    r"|(?P<uri>://[^:/@\s]*:)\S*@",
    re.IGNORECASE | re.DOTALL,
)


def _hidden(match: re.Match[str]) -> str:
    if match["uri"]:
        return match["uri"] + "***@"
    return (match["env"] or match["keyword"] or match["mapping"]) + "***"


def redact(text: str) -> str:
    """Hide the passwords of DSNs, connection settings and environments in `text`."""
    return _PASSWORD.sub(_hidden, text)


# Where a DSN's password is written, generously: a keyword value runs to the next
# `keyword=` (libpq may have split an unquoted password with a space), a URI's to its
# last @.
_DSN_PASSWORD = re.compile(
    r"password\s*=\s*(.*?)(?=\s+\w+\s*=|$)|://[^:/@\s]*:(.*)@", re.IGNORECASE | re.DOTALL
)
_QUOTED_FRAGMENT = re.compile(r""""((?:[^"\\\n]|\\.)+)"|'((?:[^'\\\n]|\\.)+)'""")
_QUOTED_GREEDY = re.compile(r'"[^\n]*"')


def hide_password_of(dsn: str, text: str, unparsable: bool = False) -> str:
    """`text` (an error about `dsn`) redacted, and with the fragments of the DSN's password
    hidden that libpq quotes when it cannot parse a DSN (`missing "=" after "..."`):
    with `unparsable`, every quoted part of the message, since a fragment may hold
    quotes itself."""
    spans = [m[1] or m[2] for m in _DSN_PASSWORD.finditer(dsn) if m[1] or m[2]]
    if not spans:
        return redact(text)

    def fragment(match: re.Match[str]) -> str:
        quoted = {match[1] or match[2], _unquoted(match[0])}
        return '"***"' if any(_betrays(q, span) for q in quoted for span in spans) else match[0]

    text = _QUOTED_GREEDY.sub('"***"', text) if unparsable else text
    text = _QUOTED_FRAGMENT.sub(fragment, text)
    pieces = {piece for span in spans for piece in (span, *span.split())}
    for piece in sorted((p for p in pieces if len(p) >= 4), key=len, reverse=True):
        text = text.replace(piece, "***")
    return redact(text)


def _unquoted(literal: str) -> str:
    """A quoted part of a message as Python's repr wrote it (psycopg's messages do),
    back to its text; as is when it is no Python literal."""
    try:
        value = ast.literal_eval(literal)
    except Exception:  # an error path: never fail here
        return literal[1:-1]
    return value if isinstance(value, str) else literal[1:-1]


def _betrays(quoted: str, span: str) -> bool:
    """Whether a quoted part of an error may be a piece of the password `span`. A raw @
    in a URI's password makes libpq read what follows it as the host: a quoted host
    may start with the password's end."""
    tails = span.split("@")[1:]
    return (
        quoted in span
        or span in quoted
        or _common_run(quoted, span) >= 4
        or any(tail and quoted.startswith(tail) for tail in tails)
    )


def _common_run(a: str, b: str) -> int:
    """The length of the longest text that `a` and `b` both contain."""
    best = 0
    previous = [0] * (len(b) + 1)
    for char in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if char == other else 0)
        best = max(best, *current)
        previous = current
    return best


# A job's error holds at most 64 KiB (docs/decisions.md): the error of its attempt,
# plus the notes of its failure hooks, each cut to its own share.
MAX_ERROR_BYTES = 60 * 1024
MAX_NOTE_BYTES = 1024


def storable(text: str, limit: int = MAX_ERROR_BYTES) -> str:
    """`text` as PostgreSQL can store it, in at most `limit` bytes: NUL and lone
    surrogates (which an exception message may well contain) are written as escapes
    instead of failing the write, and a longer text is cut (`capped`)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return capped(text, limit)


def capped(text: str, limit: int) -> str:
    """`text` in at most `limit` bytes of UTF-8: its start and its end, with the cut
    marked in between. The start of an error says what it is; the end of a traceback
    says where it happened."""
    if len(text) * 4 <= limit:  # cheap: no character takes more than 4 bytes
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    keep = max(limit - 64, 0)  # room for the marker
    head = _token_cut(data[: keep * 3 // 4].decode("utf-8", "ignore"), from_end=True)
    tail = _token_cut(data[len(data) - (keep - keep * 3 // 4) :].decode("utf-8", "ignore"))
    cut = len(data) - len(head.encode("utf-8")) - len(tail.encode("utf-8"))
    return f"{head}\n\u2026 [truncated {cut} bytes] \u2026\n{tail}"


def _token_cut(text: str, *, from_end: bool = False) -> str:
    """Drop the word the cut went through (up to 256 characters): half a DSN would
    slip past `redact`, which runs on the cut text."""
    edge = text[-256:] if from_end else text[:256]
    spaces = [i for i, char in enumerate(edge) if char.isspace()]
    if from_end:
        return text[: len(text) - len(edge) + (spaces[-1] if spaces else 0)]
    return text[(spaces[0] if spaces else len(edge)) :]
