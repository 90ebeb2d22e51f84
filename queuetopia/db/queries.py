"""Every SQL statement queuetopia runs, named noun-first.

Each statement is a file of its own under `queuetopia/sql/`, written out whole as
PostgreSQL runs it, with the comments that explain it: `sql/job_step.sql` is
JOB_STEP. The files are read once, at import, their comments stripped and their
whitespace compacted (`compact`).

All values are bound parameters; no statement is ever built from user input.
Time is always the database's (`now()`, `clock_timestamp()`), never a worker's.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from typing import LiteralString

CHANNEL = "queuetopia"

# The columns of a job, as every statement that returns jobs writes them out in full
# (tests/test_queries.py checks every copy against this one).
# Empty logs come back as NULL (the Job model reads that as empty): most jobs have
# none, and two JSON parses per claimed job were a measurable share of a worker's CPU.
JOB_COLUMNS: LiteralString = (
    " id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,"
    " timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,"
    " failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,"
    " unique_key, depends_on, nullif(attempt_log, '[]') AS attempt_log,"
    " nullif(operator_log, '[]') AS operator_log"
)

# A job's attempt_log keeps its last 20 attempts and 2000 characters of each error
# (JOB_STEP); its operator_log the last 50 operator actions.

# The statements, one for each file of queuetopia/sql/, set by _load() below. A file
# without its name here, or a name here without its file, fails the import.
BUCKET_PRUNE: LiteralString
DB_NOW: LiteralString
JOB_AWAIT: LiteralString
JOB_CANCEL: LiteralString
JOB_COUNTS_PER_MINUTE: LiteralString
JOB_GET: LiteralString
JOB_GET_UNIQUE: LiteralString
JOB_IDS_MISSING: LiteralString
JOB_INSERT_MANY: LiteralString
JOB_INSERT_UNIFORM: LiteralString
JOB_LIST: LiteralString
JOB_NOTE_ERROR: LiteralString
JOB_PRUNE_BATCH: LiteralString
JOB_RETRY: LiteralString
JOB_SELECT: LiteralString
JOB_STEP: LiteralString
LEASE_BARRIER: LiteralString
LEASE_LIST: LiteralString
LEASE_RELEASE: LiteralString
LEASE_RENEW: LiteralString
LIMIT_LIST: LiteralString
LIMIT_REMOVE: LiteralString
LIMIT_SET: LiteralString
PERIODIC_ADVANCE: LiteralString
PERIODIC_LOCK: LiteralString
PERIODIC_REGISTER: LiteralString
PRUNE_LOCK: LiteralString
QUEUE_BLOCKED_STATS: LiteralString
QUEUE_DUE: LiteralString
QUEUE_LINE: LiteralString
QUEUE_LIST: LiteralString
QUEUE_NEXT_DUE: LiteralString
QUEUE_SELECT: LiteralString
QUEUE_SET_PAUSED: LiteralString
QUEUE_TOUCH: LiteralString
SCOPE_NOTIFY: LiteralString


def compact(statement: str) -> str:
    """`statement` with each run of whitespace outside string literals made one space
    (kept at its ends). psycopg caches a query's conversion only if it is shorter than
    4 KiB: converting a long statement again at every batch cost a worker about 3 % of
    its CPU."""
    out: list[str] = []
    for kind, text in _pieces(statement):
        if kind == "space":
            if not out or out[-1] != " ":
                out.append(" ")
        else:
            out.append(text)
    return "".join(out)


def strip_comments(statement: str) -> str:
    """`statement` with each `--` comment outside string literals made a line end
    (string literals are read as `compact` reads them)."""
    return "".join(text for kind, text in _pieces(statement) if kind != "comment")


def _pieces(statement: str) -> Iterator[tuple[str, str]]:
    """The statement as ("literal" | "comment" | "space" | "text", text) pieces, in
    order: a string literal ('' inside it included) or a `--` comment (to its line's
    end) is one piece, each whitespace character another."""
    i, n = 0, len(statement)
    while i < n:
        ch = statement[i]
        if ch == "'":
            end = _literal_end(statement, i)
            yield "literal", statement[i:end]
        elif statement.startswith("--", i):
            found = statement.find("\n", i)
            end = n if found < 0 else found
            yield "comment", statement[i:end]
        else:
            end = i + 1
            yield ("space" if ch.isspace() else "text"), ch
        i = end


def _literal_end(statement: str, start: int) -> int:
    """Where the string literal opening at `start` ends ('' inside it included)."""
    end, n = start + 1, len(statement)
    while (end := statement.index("'", end) + 1) < n and statement[end] == "'":
        end += 1
    return end


def _load() -> None:
    """Set each statement declared above to its file, as PostgreSQL gets it: without
    its comments, its whitespace compacted (psycopg's 4 KiB cache, see `compact`)."""
    module = globals()
    declared = {name for name in module["__annotations__"] if name not in module}
    found = set()
    for entry in resources.files(__package__).joinpath("sql").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        name = entry.name.removesuffix(".sql").upper()
        if name not in declared:
            raise ImportError(f"queuetopia/sql/{entry.name}: no constant {name} in queries.py")
        # The file is part of the package, so its text is as constant as a literal: the
        # declared type LiteralString holds (mypy reads LiteralString as str, so a cast
        # here would be redundant).
        module[name] = compact(strip_comments(entry.read_text("utf-8"))).strip()
        found.add(name)
    if missing := sorted(declared - found):
        raise ImportError(f"queuetopia/sql/ has no file for {', '.join(missing)}")


_load()


# JOB_STEP is longer than psycopg's 4 KiB cache: converting its placeholders again at
# every step cost 140 µs of client CPU. A worker's own connection prepares it once,
# by name, with positional parameters (job_step_prepare), and each step sends only the
# short EXECUTE, its parameters bound by the client, as a utility statement takes no
# bind parameters (db/connections.py). Behind PgBouncer in transaction mode nothing
# may be prepared: there the statement goes whole, and the conversion is paid.
JOB_STEP_EXECUTE: LiteralString = (
    "EXECUTE queuetopia_job_step (%(scope)s::text, %(owner)s::text, %(node)s::text,"
    " %(ttl)s::float8, %(batch)s::jsonb)"
)


def job_step_prepare() -> LiteralString:
    """The PREPARE of JOB_STEP, its named placeholders made positional."""
    step: LiteralString = globals()["JOB_STEP"]
    statement = (
        step.replace("%(scope)s", "$1")
        .replace("%(owner)s", "$2")
        .replace("%(node)s", "$3")
        .replace("%(ttl)s", "$4")
        .replace("%(batch)s", "$5")
    )
    return "PREPARE queuetopia_job_step (text, text, text, float8, jsonb) AS " + statement
