"""`queuetopia migrate [APP]`: create or upgrade the schema in APP's database, or in
--dsn's for teams that migrate without the application's code (docs/migrations.md)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated

import typer

from queuetopia import Queuetopia, ValidationError, migrations

from .common import Dsn, LogFormat, LogFormatOption, OptionalApp, Verbose, open_topia
from .errors import user_errors
from .loader import load_app
from .logs import setup_logging
from .render import console


def migrate(
    app_spec: OptionalApp = None,
    dsn: Dsn = None,
    status: Annotated[bool, typer.Option("--status", help="Show versions only.")] = False,
    print_sql: Annotated[bool, typer.Option("--print-sql", help="Print the SQL.")] = False,
    print_rls: Annotated[
        bool,
        typer.Option(
            "--print-rls", help="Print the opt-in row-level security SQL (docs/security.md)."
        ),
    ] = False,
    role: Annotated[
        str | None, typer.Option(help="With --print-rls: the role to grant and map.")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="With --print-rls: a scope the role may use (default: APP's)."),
    ] = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Create or upgrade the schema in APP's database, or --dsn's (idempotent)."""
    if print_sql:
        typer.echo(migrations.up_sql())
        return
    if print_rls or role or scope:
        with user_errors(app_spec):
            typer.echo(_rls_sql(app_spec, print_rls, role, scope or ()))
        return
    with _target(app_spec, dsn, verbose, log_format) as topia, topia.connection() as conn:
        if status:
            applied = migrations.applied_versions(conn)
            for version in (m.version for m in migrations.all_migrations()):
                console.print(f"{version:04d} {'applied' if version in applied else 'pending'}")
            return
        done = migrations.migrate(conn)
    console.print(f"applied {len(done)} migration(s)" if done else "schema is up to date")


@contextmanager
def _target(
    app_spec: str | None, dsn: str | None, verbose: bool, log_format: LogFormat
) -> Iterator[Queuetopia]:
    """APP's topia (--dsn overriding its database), or a bare one on --dsn; without
    either, the DSN every topia finds ($QUEUETOPIA_DSN, else the embedded server)."""
    if app_spec:
        with open_topia(app_spec, dsn, verbose, log_format) as topia:
            yield topia
        return
    setup_logging(verbose, log_format.value)
    with user_errors(), Queuetopia(dsn=dsn) as topia:
        yield topia


def _rls_sql(app_spec: str | None, print_rls: bool, role: str | None, scopes: Sequence[str]) -> str:
    """The row-level security script; with APP and a role, the role is mapped to APP's
    scope unless --scope names others."""
    if not print_rls:
        raise ValidationError("--role and --scope go with --print-rls")
    if app_spec and role and not scopes:
        scopes = [load_app(app_spec).scope]
    return migrations.rls_sql(role, scopes)
