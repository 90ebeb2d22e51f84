"""Operator commands: retry and cancel a job, pause and resume a queue, prune old jobs.
Each says what changed, or refuses in one line when the change makes no sense."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Annotated

import typer

from queuetopia import InvalidTransition, Job, JobNotFound, QueueInfo, Queuetopia

from . import render
from .common import App, Dsn, LogFormat, LogFormatOption, Verbose, open_topia, parse_duration
from .errors import fail

JobId = Annotated[int, typer.Argument(metavar="ID", help="The job's id.")]
QueueName = Annotated[str, typer.Argument(metavar="QUEUE", help="The queue's name.")]


def retry(
    app_spec: App,
    job_id: JobId,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Make a pending, failed or cancelled job due now, at its place in its queue.

    A failed or cancelled job gets its attempts back."""
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        before = _job(topia, job_id)
        render.say(render.retried(before, topia.retry_job(job_id)))


def cancel(
    app_spec: App,
    job_id: JobId,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            help="Recorded on the job. Asked for in a terminal; else 'by operator'.",
        ),
    ] = None,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Take a pending or failed job out of its queue, which then moves on.

    A running job cannot be cancelled."""
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        before = _job(topia, job_id)
        if reason is None and _interactive():
            reason = typer.prompt("Reason", default="by operator")
        after = topia.cancel_job(job_id) if reason is None else topia.cancel_job(job_id, reason)
        render.say(render.cancelled(before, after))


def pause(
    app_spec: App,
    queue: QueueName,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Stop a queue from starting new jobs; a running job finishes."""
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        if _queue(topia, queue).paused:
            raise InvalidTransition(f"queue {queue!r} is already paused")
        topia.pause_queue(queue)
        render.say(render.paused(_queue(topia, queue)))


def resume(
    app_spec: App,
    queue: QueueName,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Let a paused queue start jobs again."""
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        if not _queue(topia, queue).paused:
            raise InvalidTransition(f"queue {queue!r} is not paused")
        topia.resume_queue(queue)
        render.say(render.resumed(_queue(topia, queue)))


def prune(
    app_spec: App,
    older_than: Annotated[
        timedelta | None,
        typer.Option(
            "--older-than",
            parser=parse_duration,
            metavar="DURATION",
            help="Like 30s, 15m, 12h or 7d. Default: the topia's job_retention.",
        ),
    ] = None,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Delete done and cancelled jobs that finished longer ago than --older-than."""
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        if older_than is None:
            if topia.job_retention is None:
                raise fail("this topia keeps every job (job_retention=None); pass --older-than")
            older_than = topia.job_retention
        render.say(render.pruned(topia.prune(older_than=older_than), older_than))


def _job(topia: Queuetopia, job_id: int) -> Job:
    job = topia.get_job(job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id} in scope {topia.scope!r}")
    return job


def _queue(topia: Queuetopia, name: str) -> QueueInfo:
    for info in topia.list_queues():
        if info.queue == name:
            return info
    raise fail(f"no queue {name!r} in scope {topia.scope!r}")


def _interactive() -> bool:
    return sys.stdin.isatty()
