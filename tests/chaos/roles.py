"""Least-privilege roles: what a worker, a producer and an operator need, and nothing
more. The grants are tests/chaos/grants.sql, which docs/reliability.md shows as is."""

from __future__ import annotations

from pathlib import Path

GRANTS = Path(__file__).with_name("grants.sql")
ROLES = {"worker": "qt_worker", "producer": "qt_producer", "operator": "qt_operator"}


def setup_sql(password: str) -> list[str]:
    """Create the roles (LOGIN and nothing else), then run grants.sql as one script."""
    statements = []
    for role in ROLES.values():
        statements.append(
            f"DO $$ BEGIN CREATE ROLE {role} LOGIN;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        statements.append(f"ALTER ROLE {role} PASSWORD '{password}'")
        # Log every DDL statement these roles try, so a test can prove there was none.
        statements.append(f"ALTER ROLE {role} SET log_statement = 'ddl'")
    statements.append(GRANTS.read_text("utf-8"))
    return statements
