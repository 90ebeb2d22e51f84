"""`queuetopia jobs` lists jobs; `queuetopia job` shows everything about one."""

from __future__ import annotations

from typing import Annotated

import typer

from queuetopia import JobNotFound, JobState

from . import render
from .common import App, Dsn, Json, LogFormat, LogFormatOption, Verbose, open_topia, shown


def jobs(
    app_spec: App,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.")] = None,
    state: Annotated[
        JobState | None, typer.Option("--state", "-s", help="Only this state.")
    ] = None,
    action: Annotated[str | None, typer.Option("--action", "-a", help="Only this action.")] = None,
    search: Annotated[
        str | None,
        typer.Option("--search", help="Text found in the action, queue, params or error."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Most jobs shown.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many first.")] = 0,
    json: Json = False,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """List jobs, oldest first, filtered by queue, state, action or text."""
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        found = topia.list_jobs(
            queue=queue, action=action, state=state, search=search, limit=limit, offset=offset
        )
        found = [shown(topia, job) for job in found]
        if json:
            typer.echo(render.to_json(found))
        else:
            render.show(render.jobs_table(found))


def job(
    app_spec: App,
    job_id: Annotated[int, typer.Argument(metavar="ID", help="The job's id.")],
    json: Json = False,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Show everything about one job: fields, params, result and the full error."""
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        found = topia.get_job(job_id)
        if found is None:
            raise JobNotFound.of(job_id, topia.scope)
        found = shown(topia, found)
        if json:
            typer.echo(render.to_json(found))
        else:
            render.show(render.job_view(found, topia.get_queue(found.queue)))
