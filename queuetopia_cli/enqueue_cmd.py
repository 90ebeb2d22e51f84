"""`queuetopia enqueue`: one job from --params, or one per line of a JSON Lines file."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from queuetopia import Job, JobRequest, Queuetopia, ValidationError

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

# Jobs written per round trip by --file.
BATCH = 500


def enqueue(
    app_spec: App,
    action: Annotated[str, typer.Argument(metavar="ACTION", help="The action to run.")],
    queue: Annotated[str, typer.Argument(metavar="QUEUE", help="The queue to join.")],
    params: Annotated[
        str | None, typer.Option("--params", "-p", metavar="JSON", help="A JSON object.")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", metavar="ISO", help="Run at this time (ISO 8601; no offset = local time)."
        ),
    ] = None,
    in_: Annotated[
        timedelta | None,
        typer.Option(
            "--in", parser=parse_duration, metavar="SECONDS", help="Run after this delay (or 5m)."
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            exists=True,
            dir_okay=False,
            readable=True,
            help=(
                "JSON Lines: each non-blank line is the params object of one job (the same "
                "object --params takes, not wrapped). All go to QUEUE in file order, in one "
                "transaction: one bad line enqueues nothing."
            ),
        ),
    ] = None,
    any_action: Annotated[
        bool,
        typer.Option(
            "--any-action", help="Allow an ACTION that APP does not register (params unchecked)."
        ),
    ] = False,
    json_output: Json = False,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Enqueue a job, validated against ACTION's signature like `.delay`."""
    scheduled = _schedule(at, in_)
    if file is not None and params is not None:
        raise fail("give --params or --file, not both", EXIT_USAGE)
    lines = _read_lines(file) if file is not None else [(0, _params(params or "{}", "--params"))]
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        if action not in topia.actions and not any_action:
            raise fail(_unknown_action(topia, app_spec, action))
        if file is None:
            request = JobRequest(queue, action, lines[0][1], scheduled_at=scheduled)
            jobs = topia.enqueue_many([request])
        else:
            jobs = _enqueue_lines(topia, action, queue, lines, scheduled)
        if json_output:
            jobs = [shown(topia, job) for job in jobs]  # sensitive params masked
            typer.echo(render.to_json(jobs if file is not None else jobs[0]))
        else:
            render.say(render.enqueued(jobs))


def _enqueue_lines(
    topia: Queuetopia,
    action: str,
    queue: str,
    lines: list[tuple[int, dict[str, Any]]],
    scheduled: datetime | timedelta | None,
) -> list[Job]:
    """Validate every line first, then write them in batches in one transaction."""
    requests = [JobRequest(queue, action, params, scheduled_at=scheduled) for _, params in lines]
    for (number, _), request in zip(lines, requests, strict=True):
        _check(topia, number, request)
    jobs: list[Job] = []
    with render.progress_bar() as bar, topia.transaction() as conn:
        task = bar.add_task(f"enqueue {action} into {queue}", total=len(requests))
        for start in range(0, len(requests), BATCH):
            batch = requests[start : start + BATCH]
            jobs += topia.enqueue_many(batch, connection=conn)
            bar.advance(task, len(batch))
    return jobs


def _check(topia: Queuetopia, number: int, request: JobRequest) -> None:
    """Validate one line like `.delay` would, naming the line."""
    try:
        topia.validate([request])
    except ValidationError as exc:
        raise ValidationError(f"line {number}: {exc}") from exc


def _schedule(at: str | None, delay: timedelta | None) -> datetime | timedelta | None:
    if at is not None and delay is not None:
        raise fail("give --at or --in, not both", EXIT_USAGE)
    if delay is not None:
        return delay
    if at is None:
        return None
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise fail(f"--at {at!r} is not an ISO 8601 time", EXIT_USAGE) from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def _params(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"{where} is not valid JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(value, dict):
        raise fail(f"{where} must be a JSON object of params", EXIT_USAGE)
    return value


def _read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {path}: {exc}", EXIT_USAGE) from None
    return [
        (number, _params(line, f"line {number} of {path}"))
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def _unknown_action(topia: Queuetopia, app_spec: str, action: str) -> str:
    known = ", ".join(sorted(topia.actions)) or "none"
    return (
        f"{app_spec} registers no action {action!r} (it has: {known}); "
        "pass --any-action to enqueue it anyway"
    )
