"""The `queuetopia` command: parse, call the library, hand data to the renderer."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from . import dashboard_cmd, enqueue_cmd, inspect_cmd, jobs_cmd, limit_cmd, migrate_cmd, ops_cmd
from .common import App, Dsn, LogFormat, LogFormatOption, Verbose, open_topia
from .errors import user_errors
from .logs import setup_logging
from .render import console

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Persistent, strictly ordered, blocking job queues on PostgreSQL.",
)


def worker(
    app_spec: App,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Most jobs at once.")] = None,
    queue: Annotated[list[str] | None, typer.Option(help="Only these queues.")] = None,
    poll_interval: Annotated[float | None, typer.Option(min=0.01, help="Seconds.")] = None,
    name: Annotated[str | None, typer.Option(help="Added to this node's identity.")] = None,
    shutdown_timeout: Annotated[float, typer.Option(min=0, help="Seconds.")] = 30.0,
    prefetch: Annotated[
        int | None,
        typer.Option(min=0, help="Most jobs claimed ahead of free slots (default: concurrency)."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve Prometheus metrics on this port."),
    ] = None,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Run jobs until SIGTERM or SIGINT."""
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        if poll_interval is not None:
            topia.poll_interval = poll_interval
        runner = topia.worker(
            concurrency=concurrency,
            queues=queue or None,
            name=name,
            shutdown_timeout=shutdown_timeout,
            prefetch=prefetch,
        )
        if metrics_port is not None:
            from queuetopia.metrics import PrometheusMetrics

            metrics = PrometheusMetrics(topia)
            metrics.serve(metrics_port)
            runner.observers.append(metrics)
        runner.run()


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


# Registered in the order `--help` lists them.
for command in (
    worker,
    inspect_cmd.inspect,
    jobs_cmd.jobs,
    jobs_cmd.job,
    ops_cmd.retry,
    ops_cmd.cancel,
    ops_cmd.pause,
    ops_cmd.resume,
    enqueue_cmd.enqueue,
    migrate_cmd.migrate,
    ops_cmd.prune,
    demo,
    dashboard_cmd.dashboard,
):
    app.command()(command)
app.add_typer(limit_cmd.limit, name="limit")


def main() -> None:
    app()
