"""Operator commands: retry and cancel jobs, pause and resume queues (one, or a
selection: docs/operations.md), prune old jobs. Each says what changed, or refuses in
one line when the change makes no sense; who did it and why is recorded."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import Annotated

import typer

from queuetopia import (
    InvalidTransition,
    Job,
    JobNotFound,
    JobState,
    QueueInfo,
    Queuetopia,
    Selection,
)
from queuetopia.operations import CANCELLABLE, MAX_SELECTION, RETRYABLE

from . import render
from .common import (
    App,
    Dsn,
    Json,
    LogFormat,
    LogFormatOption,
    Verbose,
    open_topia,
    parse_duration,
    shown,
)
from .errors import EXIT_USAGE, fail

# Changes of more items than this ask first (or need --yes).
CONFIRM_ABOVE = 10

JobId = Annotated[
    int | None, typer.Argument(metavar="ID", help="The job's id (or give a selection).")
]
QueueName = Annotated[
    str | None, typer.Argument(metavar="QUEUE", help="The queue (or give --queue-pattern).")
]
Pattern = Annotated[
    str | None,
    typer.Option(
        "--queue-pattern", metavar="GLOB", help="Every queue matching, like 'webhooks:*'."
    ),
]
States = Annotated[
    list[JobState] | None,
    typer.Option("--state", "-s", help="Jobs in this state (repeatable). Default: failed."),
]
ActionName = Annotated[str | None, typer.Option("--action", "-a", help="Jobs of this action.")]
Since = Annotated[
    str | None,
    typer.Option(
        "--since", metavar="DURATION|ISO", help="Jobs changed since then (like 2h, or a time)."
    ),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Print exactly what would change; change nothing.")
]
Yes = Annotated[
    bool, typer.Option("--yes", "-y", help=f"Change more than {CONFIRM_ABOVE} without asking.")
]
By = Annotated[
    str | None, typer.Option("--by", help="Recorded as who did it. Default: the OS user.")
]
Reason = Annotated[str | None, typer.Option("--reason", help="Recorded as why.")]
Limit = Annotated[
    int, typer.Option("--limit", "-n", min=1, max=MAX_SELECTION, help="Most jobs changed.")
]


def retry(
    app_spec: App,
    job_id: JobId = None,
    queue_pattern: Pattern = None,
    state: States = None,
    action: ActionName = None,
    since: Since = None,
    limit: Limit = 1000,
    dry_run: DryRun = False,
    yes: Yes = False,
    by: By = None,
    reason: Reason = None,
    json: Json = False,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Make a job due now at its place in its queue, or every job of a selection.

    A failed or cancelled job gets its attempts back. With a selection (--queue-pattern,
    --state, --action, --since), --dry-run prints what would change."""
    selection = _selection(job_id, queue_pattern, state, action, since, limit)
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        if selection is None:
            assert job_id is not None
            before = _job(topia, job_id)
            if dry_run:
                return _dry_run_one(topia, "retry", before, json)
            after = topia.retry_job(job_id, by=by, reason=reason)
            _said(json, after, render.retried(before, after))
            return
        _change_jobs(topia, "retry", selection, dry_run, yes, by, reason, json)


def cancel(
    app_spec: App,
    job_id: JobId = None,
    queue_pattern: Pattern = None,
    state: States = None,
    action: ActionName = None,
    since: Since = None,
    limit: Limit = 1000,
    dry_run: DryRun = False,
    yes: Yes = False,
    by: By = None,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            help="Recorded on the job. Asked for in a terminal; else 'by operator'.",
        ),
    ] = None,
    json: Json = False,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Take a pending or failed job, or a selection, out of its queue, which moves on.

    A selection is --queue-pattern, --state, --action and --since. A running job is
    stopped by its worker, then ends cancelled (unless it is done first)."""
    selection = _selection(job_id, queue_pattern, state, action, since, limit)
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        if selection is None:
            assert job_id is not None
            before = _job(topia, job_id)
            if dry_run:
                return _dry_run_one(topia, "cancel", before, json)
            if reason is None and _interactive():
                reason = typer.prompt("Reason", default="by operator")
            after = topia.cancel_job(job_id, reason or "by operator", by=by)
            _said(json, after, render.cancelled(before, after))
            return
        _change_jobs(topia, "cancel", selection, dry_run, yes, by, reason, json)


def pause(
    app_spec: App,
    queue: QueueName = None,
    queue_pattern: Pattern = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    by: By = None,
    reason: Reason = None,
    json: Json = False,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Stop a queue, or every queue matching --queue-pattern, from starting new jobs.

    A running job finishes."""
    _pause_or_resume(
        app_spec,
        True,
        queue,
        queue_pattern,
        dry_run,
        yes,
        by,
        reason,
        json,
        dsn,
        verbose,
        log_format,
    )


def resume(
    app_spec: App,
    queue: QueueName = None,
    queue_pattern: Pattern = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    by: By = None,
    reason: Reason = None,
    json: Json = False,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Let a paused queue, or every paused queue matching --queue-pattern, start jobs."""
    _pause_or_resume(
        app_spec,
        False,
        queue,
        queue_pattern,
        dry_run,
        yes,
        by,
        reason,
        json,
        dsn,
        verbose,
        log_format,
    )


def _pause_or_resume(
    app_spec: str,
    paused: bool,
    queue: str | None,
    pattern: str | None,
    dry_run: bool,
    yes: bool,
    by: str | None,
    reason: str | None,
    json: bool,
    dsn: str | None,
    verbose: bool,
    log_format: LogFormat,
) -> None:
    if (queue is None) == (pattern is None):
        raise fail("give QUEUE or --queue-pattern (one of them)", EXIT_USAGE)
    verb = "pause" if paused else "resume"
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        change = topia.pause_queues if paused else topia.resume_queues
        if queue is not None:
            _queue(topia, queue)  # a queue the scope does not have is refused as such
            if dry_run:
                names = change([queue], dry_run=True, by=by, reason=reason)
                _report(json, {"dry_run": True, verb: names}, render.would(verb, names, "queue"))
                return
            # The library changes only a queue not in that state yet, and says which did.
            if not change([queue], by=by, reason=reason):
                state = "already paused" if paused else "not paused"
                raise InvalidTransition(f"queue {queue!r} is {state}")
            after = _queue(topia, queue)
            _said(json, after, render.paused(after) if paused else render.resumed(after))
            return
        assert pattern is not None
        names = change(pattern, dry_run=True, by=by, reason=reason)
        if dry_run:
            _report(json, {"dry_run": True, verb: names}, render.would(verb, names, "queue"))
            return
        _confirm(verb, len(names), "queue", yes)
        done = change(names, by=by, reason=reason) if names else []  # exactly those shown
        _report(json, {"dry_run": False, verb: done}, render.changed_queues(verb, done))


def _dry_run_one(topia: Queuetopia, verb: str, job: Job, json: bool) -> None:
    """What retrying or cancelling one job would change: the job, if its state allows
    it (as a selection's dry run decides), else nothing."""
    allowed = CANCELLABLE if verb == "cancel" else RETRYABLE
    jobs = [shown(topia, job)] if job.state in allowed else []
    if json:
        typer.echo(render.to_json({"dry_run": True, verb: _plain(jobs)}))
    else:
        render.say(render.would(verb, [f"job {j.id}" for j in jobs], "job"))


def _change_jobs(
    topia: Queuetopia,
    verb: str,
    selection: Selection,
    dry_run: bool,
    yes: bool,
    by: str | None,
    reason: str | None,
    json: bool,
) -> None:
    found = topia.select_jobs(selection, verb=verb)
    if dry_run:
        jobs = [shown(topia, job) for job in found]
        if json:
            typer.echo(render.to_json({"dry_run": True, verb: _plain(jobs)}))
        else:
            render.say(render.would(verb, [f"job {j.id}" for j in jobs], "job"))
            if jobs:
                render.show(render.jobs_table(jobs))
        return
    _confirm(verb, len(found), "job", yes)
    ids = [job.id for job in found]
    change = topia.cancel_jobs if verb == "cancel" else topia.retry_jobs
    done = [shown(topia, job) for job in change(ids, by=by, reason=reason)] if ids else []
    if json:
        typer.echo(render.to_json({"dry_run": False, verb: _plain(done)}))
    else:
        render.say(render.changed_jobs(verb, done, len(found)))


def _plain(jobs: list[Job]) -> list[object]:
    return [job.model_dump(mode="json") for job in jobs]


def _confirm(verb: str, count: int, noun: str, yes: bool) -> None:
    """Ask before changing more than CONFIRM_ABOVE items; refuse without a terminal."""
    if count <= CONFIRM_ABOVE or yes:
        return
    if not _interactive():
        raise fail(
            f"{count} {noun}s selected: pass --yes to {verb} more than {CONFIRM_ABOVE} "
            "without a prompt (no terminal to ask on), or --dry-run to see them"
        )
    if not typer.confirm(f"{verb} {count} {noun}s?", default=False):
        raise fail(f"nothing changed: {verb} of {count} {noun}s not confirmed")


def _selection(
    job_id: int | None,
    pattern: str | None,
    states: list[JobState] | None,
    action: str | None,
    since: str | None,
    limit: int,
) -> Selection | None:
    """None for one job by id; else the selection (a usage error if both or neither)."""
    selecting = pattern is not None or states or action is not None or since is not None
    if job_id is not None and selecting:
        raise fail("give an ID or a selection, not both", EXIT_USAGE)
    if job_id is not None:
        return None
    if not selecting:
        raise fail("give an ID or a selection (--queue-pattern, --state, --action)", EXIT_USAGE)
    return Selection(
        queue_pattern=pattern,
        states=tuple(states) if states else (JobState.FAILED,),
        action=action,
        since=_since(since),
        limit=limit,
    )


def _since(text: str | None) -> datetime | timedelta | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except typer.BadParameter:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        message = f"--since {text!r} is neither a duration like 2h nor an ISO time"
        raise fail(message, EXIT_USAGE) from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def _said(json: bool, model: Job | QueueInfo, message: str) -> None:
    if json:
        typer.echo(render.to_json(model))
    else:
        render.say(message)


def _report(json: bool, data: dict[str, object], message: str) -> None:
    if json:
        typer.echo(render.to_json(data))
    else:
        render.say(message)


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
        raise JobNotFound.of(job_id, topia.scope)
    return job


def _queue(topia: Queuetopia, name: str) -> QueueInfo:
    for info in topia.list_queues():
        if info.queue == name:
            return info
    raise fail(f"no queue {name!r} in scope {topia.scope!r}")


def _interactive() -> bool:
    return sys.stdin.isatty()
