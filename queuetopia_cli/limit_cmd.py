"""`queuetopia limit set|list|remove`: rate limits on job starts (docs/flow-control.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import App, Dsn, Json, LogFormat, LogFormatOption, Verbose, open_topia
from .render import limits_table, say, show, to_json

limit = typer.Typer(
    no_args_is_help=True,
    help="Rate limits on job starts, enforced by the database across every worker.",
)

Name = Annotated[str, typer.Argument(help="The limit's name.", show_default=False)]


@limit.command("set")
def set_(
    app_spec: App,
    name: Name,
    queues: Annotated[str, typer.Option("--queues", help="A queue, or a glob like 'webhooks:*'.")],
    rate: Annotated[str, typer.Option("--rate", help="Starts per period: 10/s, 100/min, 5/2h.")],
    burst: Annotated[int, typer.Option("--burst", help="Starts at once, after a pause.")] = 1,
    shared: Annotated[
        bool, typer.Option("--shared", help="One budget for all the queues, not one each.")
    ] = False,
    by: Annotated[str | None, typer.Option("--by", help="Recorded as who set it.")] = None,
    json: Json = False,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Create or replace a rate limit."""
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        made = topia.set_limit(name, queues=queues, rate=rate, burst=burst, shared=shared, by=by)
        if json:
            typer.echo(to_json(made))
        else:
            budget = "one budget for all" if made.shared else "each on its own budget"
            say(
                f"limit {made.name!r}: queues {made.queues!r} ({budget}) start at most"
                f" {made.rate}, bursts of {made.burst}"
            )


@limit.command("list")
def list_(
    app_spec: App,
    json: Json = False,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """The scope's rate limits."""
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        limits = topia.list_limits()
        if json:
            typer.echo(to_json(limits))
        elif not limits:
            say("no rate limits")
        else:
            show(limits_table(limits))


@limit.command("remove")
def remove(
    app_spec: App,
    name: Name,
    json: Json = False,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Remove a rate limit: the queues it covered start at once."""
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        removed = topia.remove_limit(name)
        if json:
            typer.echo(to_json(removed))
        else:
            say(f"removed limit {removed.name!r} ({removed.queues!r} at {removed.rate})")
