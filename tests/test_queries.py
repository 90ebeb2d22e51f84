"""queuetopia/db/queries.py loads one statement from each file of queuetopia/db/sql/: every
file is a constant, every constant is run by the database layer (queuetopia/db/), and
what PostgreSQL gets is the file without its comments, small enough for psycopg's
statement cache (or prepared by name). The fragments written out in several files
(the job columns, the rewind, the operator's record) are the same in each."""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path

from queuetopia.db import queries

LAYER = Path(queries.__file__).parent

# Constants of queries.py that are not statements of their own, so neither have a file
# nor need to be run by store.py.
NOT_STATEMENTS = {
    # Not SQL: the LISTEN/NOTIFY channel; queuetopia/db/notify.py listens on it.
    "CHANNEL",
    # The job columns, written out in full in each statement that returns jobs (see
    # test_every_copy_of_the_job_columns_is_whole); kept as the reference list.
    "JOB_COLUMNS",
    # The EXECUTE of JOB_STEP as a worker's connection prepares it by name.
    "JOB_STEP_EXECUTE",
}
# Statements longer than psycopg's cache, and why they may be.
LONG = {"JOB_STEP": "prepared by name on a worker's connection (queries.job_step_prepare)"}

# psycopg caches a statement's conversion only up to this length in bytes
# (psycopg._queries.MAX_CACHED_STATEMENT_LENGTH); see queries.compact.
PSYCOPG_CACHE_LIMIT = 4096


def sql_files() -> dict[str, str]:
    folder = resources.files("queuetopia.db").joinpath("sql")
    return {
        entry.name.removesuffix(".sql").upper(): entry.read_text("utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    }


def constants() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(queries).items()
        if name.isupper() and isinstance(value, str)
    }


def statements() -> dict[str, str]:
    return {name: value for name, value in constants().items() if name not in NOT_STATEMENTS}


def used_by_store() -> set[str]:
    """The statements the modules of the database layer run."""
    used = set()
    for path in LAYER.glob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        used |= {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "queries"
        }
    return used


def test_every_file_is_a_constant_and_every_constant_a_file() -> None:
    assert set(constants()) >= NOT_STATEMENTS
    assert set(sql_files()) == set(statements())


def test_each_constant_is_its_file_without_comments_compacted() -> None:
    for name, text in sql_files().items():
        value = getattr(queries, name)
        assert value == queries.compact(queries.strip_comments(text)).strip(), name
        assert "--" not in value, name


def test_every_statement_is_run_by_the_store() -> None:
    """A statement nobody runs is dead; a name the store runs must exist."""
    used = used_by_store()
    assert set(statements()) - used == set()
    assert used - set(constants()) <= {"compact", "strip_comments", "job_step_prepare"}


def test_the_statements_fit_psycopgs_cache() -> None:
    for name, value in statements().items():
        assert len(value.encode()) <= PSYCOPG_CACHE_LIMIT or name in LONG, name
    assert len(queries.JOB_STEP_EXECUTE.encode()) <= PSYCOPG_CACHE_LIMIT


def test_the_prepared_step_is_the_step_with_positional_parameters() -> None:
    prepared = queries.job_step_prepare()
    assert prepared.startswith("PREPARE queuetopia_job_step (text, text, text, float8, jsonb) AS ")
    assert "%(" not in prepared
    names = ("scope", "owner", "node", "ttl", "batch")
    back = prepared.split(" AS ", 1)[1]
    for position, name in enumerate(names, 1):
        back = back.replace(f"${position}", f"%({name})s")
    assert back == queries.JOB_STEP


def test_the_files_use_only_what_the_loader_understands() -> None:
    """compact and strip_comments know plain '...' literals and `--` comments: no
    dollar quoting, block comments, quoted identifiers or backslash escapes of quotes."""
    for name, value in statements().items():
        for construct in ("$", "/*", '"', "\\'"):
            assert construct not in value, f"{name}: {construct}"


def test_comments_are_stripped_but_not_inside_literals() -> None:
    text = "-- about it\nSELECT '--not a comment', 'it''s -- still' -- gone\n  , 1 -- end"
    stripped = queries.strip_comments(text)
    assert stripped == "\nSELECT '--not a comment', 'it''s -- still' \n  , 1 "
    assert queries.compact(stripped).strip() == ("SELECT '--not a comment', 'it''s -- still' , 1")


def test_every_copy_of_the_job_columns_is_whole() -> None:
    columns = queries.compact(queries.JOB_COLUMNS).strip()
    copies = {}
    for name, value in statements().items():
        starts = [m.start() for m in re.finditer(r"\bid, scope, queue, seq, action\b", value)]
        for start in starts:
            assert value.startswith(columns, start), f"{name}: {value[start:][:400]}"
        if starts:
            copies[name] = len(starts)
    assert copies["JOB_STEP"] == 2
    assert copies["JOB_GET"] == 1


REWIND = re.compile(r"rewinds = q\.rewinds \+ .*?THEN b_seq ELSE q\.rewind_seq END")


def test_the_rewind_is_the_same_in_each_statement() -> None:
    """A job put back into its line behind a worker's floor counts a rewind the same
    way whether a producer or an operator put it there (docs/design.md)."""
    found = {
        name: REWIND.findall(getattr(queries, name)) for name in ("JOB_INSERT_MANY", "JOB_RETRY")
    }
    assert all(len(rewinds) == 1 for rewinds in found.values()), found
    assert found["JOB_INSERT_MANY"] == found["JOB_RETRY"]


def test_both_enqueue_statements_differ_only_in_their_input() -> None:
    many, uniform = queries.JOB_INSERT_MANY, queries.JOB_INSERT_UNIFORM
    assert many.startswith("WITH input AS (") and uniform.startswith("WITH input AS (")
    rest = "), locked AS MATERIALIZED ("
    assert many[many.index(rest) :] == uniform[uniform.index(rest) :]


OPERATOR_ENTRY = re.compile(r"operator_log = \(CASE .*?'reason', %\(reason\)s::text\)\)")


def test_the_operator_entry_is_the_same_in_each_statement() -> None:
    entries = {
        name: OPERATOR_ENTRY.findall(getattr(queries, name))
        for name in ("JOB_RETRY", "JOB_CANCEL", "QUEUE_SET_PAUSED")
    }
    assert all(len(found) == 1 for found in entries.values()), entries
    assert len({found[0] for found in entries.values()}) == 1
