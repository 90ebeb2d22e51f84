"""The `queuetopia` command: parse, call the library, hand data to the renderer."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console

from queuetopia import Queuetopia, migrations

from .errors import user_errors
from .loader import load_app
from .logs import setup_logging

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Persistent, strictly ordered, blocking job queues on PostgreSQL.",
)
console = Console()

App = Annotated[str, typer.Argument(help="The topia to use, as module:attribute.")]
Dsn = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        envvar="QUEUETOPIA_DSN",
        show_envvar=True,
        help="PostgreSQL DSN; overrides the topia's own.",
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
LogFormat = Annotated[str, typer.Option("--log-format", help="text or json.")]


@app.command()
def worker(
    app_spec: App,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Most jobs at once.")] = None,
    queue: Annotated[list[str] | None, typer.Option(help="Only these queues.")] = None,
    poll_interval: Annotated[float | None, typer.Option(min=0.01, help="Seconds.")] = None,
    name: Annotated[str | None, typer.Option(help="Added to this node's identity.")] = None,
    shutdown_timeout: Annotated[float, typer.Option(min=0, help="Seconds.")] = 30.0,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormat = "text",
) -> None:
    """Run jobs until SIGTERM or SIGINT."""
    setup_logging(verbose, log_format)
    with user_errors():
        topia = load_app(app_spec, dsn)
        if poll_interval is not None:
            topia.poll_interval = poll_interval
        topia.worker(
            concurrency=concurrency,
            queues=queue or None,
            name=name,
            shutdown_timeout=shutdown_timeout,
        ).run()


@app.command()
def migrate(
    dsn: Dsn = None,
    status: Annotated[bool, typer.Option("--status", help="Show versions only.")] = False,
    print_sql: Annotated[bool, typer.Option("--print-sql", help="Print the SQL.")] = False,
) -> None:
    """Create or upgrade the schema (idempotent, safe to run concurrently)."""
    if print_sql:
        typer.echo(migrations.up_sql())
        return
    with user_errors():
        topia = Queuetopia(dsn=dsn)
        with topia, topia.connection() as conn:
            applied = migrations.applied_versions(conn)
            known = [m.version for m in migrations.all_migrations()]
            if status:
                for version in known:
                    state = "applied" if version in applied else "pending"
                    console.print(f"{version:04d} {state}")
                return
            done = migrations.migrate(conn)
        console.print(f"applied {len(done)} migration(s)" if done else "schema is up to date")


@app.command()
def demo(
    seconds: Annotated[float, typer.Option(help="Stop after this long.")] = 60.0,
    dsn: Dsn = None,
) -> None:
    """Run example jobs with a live view; one queue fails and blocks for a while."""
    from .demo import run_demo

    setup_logging(False, "text")
    logging.getLogger("queuetopia.worker").setLevel(logging.WARNING)  # the live view says it
    with user_errors():
        raise typer.Exit(run_demo(dsn, seconds, console))


def main() -> None:
    app()
