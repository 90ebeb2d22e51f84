"""The versioned schema: SQL files from migrations/, applied in order under an
advisory lock and recorded in queuetopia_versions. `up_sql()` and `down_sql()` give
the same SQL to teams that run their own migration tool."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .db.connections import Database
from .db.translate import translate_errors
from .errors import SchemaError, SchemaNotInstalled, SchemaOutdated, ValidationError
from .validation import check_name

# Reading the versions after a statement failed must not hold its caller for long.
_LOOKUP_TIMEOUT_SECONDS = 5
# Any fixed number works; it only has to be the same in every process.
_ADVISORY_KEY = 0x71756575  # "queu"
_FILE = re.compile(r"^(\d{4})_(\w+)\.(up|down)\.sql$")

# Also created by 0001 itself, so that up_sql() alone is a complete install.
VERSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS queuetopia_versions (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str


def _sql_dir() -> Path:
    shipped = Path(__file__).parent / "_sql"  # inside a wheel
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parent.parent / "migrations"  # a source checkout


@cache
def all_migrations() -> tuple[Migration, ...]:
    found: dict[int, dict[str, str]] = {}
    for path in sorted(_sql_dir().glob("*.sql")):
        match = _FILE.match(path.name)
        if match:
            version, name, direction = int(match[1]), match[2], match[3]
            found.setdefault(version, {"name": name})[direction] = path.read_text("utf-8")
    return tuple(
        Migration(v, parts["name"], parts["up"], parts.get("down", ""))
        for v, parts in sorted(found.items())
    )


def up_sql(after: int = 0) -> str:
    """The migrations newer than version `after`, oldest first, as one script for
    teams that run their own migration tool. Each records its own version, so
    `migrate()` and workers later see such a schema as up to date."""
    return "\n".join(m.up for m in all_migrations() if m.version > after)


def down_sql(to: int = 0) -> str:
    """The script that undoes the migrations newer than version `to`, newest first;
    with `to=0`, everything queuetopia created (row-level security included)."""
    downs = [m.down for m in reversed(all_migrations()) if m.version > to]
    return "\n".join([rls_down_sql(), *downs] if to == 0 else downs)


def _optional(name: str) -> str:
    return (_sql_dir() / "optional" / name).read_text("utf-8")


def rls_sql(role: str | None = None, scopes: Sequence[str] = ()) -> str:
    """The opt-in row-level security on scope (docs/security.md), to run as the owner
    of the tables: the policies, and with `role`, that role's grants and its mapping
    to `scopes`. Names are quoted by psycopg, never spliced in by hand."""
    script = _optional("rls.up.sql")
    if role is None:
        if scopes:
            raise ValidationError("scopes are mapped to a role: give the role too")
        return script
    if not scopes:
        raise ValidationError(f"give the scopes that role {role!r} may use")
    check_name("role", role)
    for scope in scopes:
        check_name("scope", scope)
    name = sql.Identifier(role).as_string(None)  # regrole reads a quoted identifier
    grants = sql.SQL(_optional("rls_role.sql")).format(
        role=sql.Identifier(role), role_name=sql.Literal(name), scopes=sql.Literal(list(scopes))
    )
    return script + "\n" + grants.as_string(None)


def rls_down_sql() -> str:
    """The script that removes the row-level security of `rls_sql()`, and only that."""
    return _optional("rls.down.sql")


def applied_versions(conn: psycopg.Connection[Any]) -> list[int]:
    with translate_errors(), conn.cursor() as cur:
        cur.execute("SELECT to_regclass('queuetopia_versions') IS NOT NULL")
        row = cur.fetchone()
        if not row or not row[0]:
            return []
        cur.execute("SELECT version FROM queuetopia_versions ORDER BY version")
        return [r[0] for r in cur.fetchall()]


def schema_problem(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
) -> SchemaError | None:
    """What is wrong with the schema of the database `conn` is connected to, after a
    statement found a queuetopia object missing: SchemaNotInstalled, SchemaOutdated, or
    None when it is current. Read on a connection of its own (`conn` may be in an
    aborted transaction, or async: its event loop waits for this, on an error path
    only), with `conn`'s settings, its search_path among them."""
    info = conn.pgconn.info
    settings = {o.keyword.decode(): o.val.decode() for o in info if o.val is not None}
    timeout = f"-c statement_timeout={_LOOKUP_TIMEOUT_SECONDS * 1000}"
    settings["options"] = f"{settings.get('options', '')} {timeout}".strip()
    settings["connect_timeout"] = str(_LOOKUP_TIMEOUT_SECONDS)
    with psycopg.connect(make_conninfo("", **settings), autocommit=True) as lookup:
        applied = applied_versions(lookup)
    needed = [m.version for m in all_migrations()]
    if not applied:
        return SchemaNotInstalled()
    if set(needed) <= set(applied):
        return None
    return SchemaOutdated.of(max(applied), max(needed))


def migrate(conn: psycopg.Connection[Any], upto: int | None = None) -> list[int]:
    """Apply pending migrations (those up to version `upto`, if given) in one
    transaction; return the versions applied.

    The transaction-level advisory lock makes concurrent runs queue up: the second
    finds the work done and applies nothing."""
    with translate_errors(), conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
        cur.execute(VERSIONS_TABLE)
        cur.execute("SELECT version FROM queuetopia_versions")
        done = {r[0] for r in cur.fetchall()}
        applied = []
        for migration in all_migrations():
            if migration.version in done or (upto is not None and migration.version > upto):
                continue
            cur.execute(migration.up.encode("utf-8"))  # records its own version
            applied.append(migration.version)
        return applied


def unapply(conn: psycopg.Connection[Any], version: int) -> bool:
    """Undo version `version` if it is applied (its down SQL removes its record);
    return whether it was. Callers undo the newest first, as Django does."""
    with translate_errors(), conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
        if version not in applied_versions(conn):
            return False
        (migration,) = (m for m in all_migrations() if m.version == version)
        script = migration.down
        if version == all_migrations()[0].version:  # undoing the first removes everything
            script = rls_down_sql() + "\n" + script
        cur.execute(script.encode("utf-8"))
        return True


def rollback_all(conn: psycopg.Connection[Any]) -> None:
    """Remove every queuetopia object, the versions table included."""
    with translate_errors(), conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
        cur.execute(down_sql().encode("utf-8"))


def ensure_current(database: Database) -> None:
    """Migrate on a connection of its own if the schema is behind (a worker starting)."""
    with translate_errors(), database.connect_bounded() as conn:
        if len(applied_versions(conn)) < len(all_migrations()):
            migrate(conn)
