"""queuetopia/db/queries.py loads one statement from each file of queuetopia/db/sql/: every
file is a constant, every constant is run by queuetopia/db/store.py, and what PostgreSQL
gets is the file without its comments, small enough for psycopg's statement cache.
The fragments written out in several files (the job columns, the head claim, the
lease fence) are the same in each."""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path

import pytest

from queuetopia.db import queries

STORE = Path(queries.__file__).with_name("store.py")

# Constants of queries.py that are not statements of their own, so neither have a file
# nor need to be run by store.py.
NOT_STATEMENTS = {
    # Not SQL: the LISTEN/NOTIFY channel; queuetopia/db/notify.py listens on it.
    "CHANNEL",
    # The job columns, written out in full in each statement that returns jobs (see
    # test_every_copy_of_the_job_columns_is_whole); kept as the reference list.
    "JOB_COLUMNS",
}

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
    tree = ast.parse(STORE.read_text("utf-8"))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "queries"
    }


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
    assert used - set(constants()) <= {"compact", "strip_comments"}


def test_the_statements_fit_psycopgs_cache() -> None:
    for name, value in statements().items():
        assert len(value.encode()) <= PSYCOPG_CACHE_LIMIT, name


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
    assert copies["JOB_CLAIM_HEAD"] == 3
    assert copies["LEASE_ACQUIRE"] == copies["JOB_FINISH"] == 2
    assert copies["JOB_GET"] == 1


HEAD_CLAIM = re.compile(
    r"claimed AS \( (UPDATE queuetopia_jobs j SET state = 'running'.*?q\.paused\)\))"
)


@pytest.mark.parametrize("other", ["LEASE_ACQUIRE", "JOB_FINISH"])
def test_the_head_claim_is_the_same_in_each_statement(other: str) -> None:
    """The claim written out in LEASE_ACQUIRE and JOB_FINISH is JOB_CLAIM_HEAD's (which
    adds its lease fence after it)."""
    mine = HEAD_CLAIM.search(queries.JOB_CLAIM_HEAD)
    theirs = HEAD_CLAIM.search(getattr(queries, other))
    assert mine and theirs
    assert theirs.group(1) == mine.group(1)
    assert queries.JOB_CLAIM_HEAD[mine.end() :].startswith(" AND EXISTS (SELECT 1 FROM lease)")


def test_the_lease_fence_is_the_same_in_each_statement() -> None:
    fence = queries.JOB_CLAIM_HEAD[: queries.JOB_CLAIM_HEAD.index("FOR UPDATE )") + 12]
    assert fence.startswith("WITH lease AS ( SELECT 1 FROM queuetopia_leases")
    assert queries.JOB_NOTE_ERROR.startswith(fence)
    assert queries.JOB_NOTE_ERROR.endswith("AND EXISTS (SELECT 1 FROM lease)")


def test_both_enqueue_statements_differ_only_in_their_input() -> None:
    many, uniform = queries.JOB_INSERT_MANY, queries.JOB_INSERT_UNIFORM
    assert many.startswith("WITH input AS (") and uniform.startswith("WITH input AS (")
    rest = "), per_queue AS ("
    assert many[many.index(rest) :] == uniform[uniform.index(rest) :]


OPERATOR_ENTRY = re.compile(r"operator_log = \(CASE .*?'reason', %\(reason\)s::text\)\)")


def test_the_operator_entry_is_the_same_in_each_statement() -> None:
    entries = {
        name: OPERATOR_ENTRY.findall(getattr(queries, name))
        for name in ("JOB_RETRY", "JOB_CANCEL", "QUEUE_SET_PAUSED")
    }
    assert all(len(found) == 1 for found in entries.values()), entries
    assert len({found[0] for found in entries.values()}) == 1
