"""`queuetopia inspect`: one row per queue, blocked queues first; once, or live."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

import typer

from queuetopia import QueueInfo, QueueStatus, Queuetopia

from . import render
from .common import (
    App,
    Dsn,
    Json,
    LogFormat,
    LogFormatOption,
    Verbose,
    open_topia,
    shown_queue,
)
from .errors import EXIT_USAGE, fail

_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


def inspect(
    app_spec: App,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.0, help="Seconds between refreshes.")
    ] = 1.0,
    iterations: Annotated[
        int | None, typer.Option("--iterations", min=1, hidden=True, help="Frames, then stop.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="LIST",
            help="Only queues with one of these, comma-separated: running, blocked, waiting, "
            "paused, idle, and failed (a queue with failed jobs).",
        ),
    ] = None,
    json: Json = False,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Show every queue: status, pending jobs, head, next attempt, last error, lease.

    Blocked queues come first, the longest blocked at the top; then the rest by name.
    With --watch and --json, one JSON line per refresh."""
    wanted = _statuses(status)
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        if not watch:
            queues = _queues(topia, wanted)
            if json:
                typer.echo(render.to_json(queues))
            else:
                render.show(render.queues_table(queues))
            return
        try:
            if json:
                for _ in _ticks(interval, iterations):
                    typer.echo(render.to_json(_queues(topia, wanted), pretty=False))
            else:
                with render.live_view() as live:
                    for _ in _ticks(interval, iterations):
                        frame = render.inspect_frame(_queues(topia, wanted), topia.scope)
                        live.update(frame, refresh=True)
        except KeyboardInterrupt:
            pass


FAILED = "failed"


def _statuses(text: str | None) -> set[str] | None:
    """--status as a set of names; a usage error for an unknown one."""
    if text is None:
        return None
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    known = {s.value for s in QueueStatus} | {FAILED}
    unknown = sorted(names - known)
    if unknown or not names:
        raise fail(
            f"--status {text!r}: unknown {', '.join(unknown) or 'empty list'} "
            f"(known: {', '.join(sorted(known))})",
            EXIT_USAGE,
        )
    return names


def _queues(topia: Queuetopia, wanted: set[str] | None = None) -> list[QueueInfo]:
    queues = [shown_queue(topia, info) for info in topia.list_queues()]
    if wanted is not None:
        queues = [
            q for q in queues if q.status.value in wanted or (FAILED in wanted and q.failed > 0)
        ]
    return sorted_queues(queues)


def sorted_queues(queues: list[QueueInfo]) -> list[QueueInfo]:
    """Blocked first, longest blocked first; then every other queue by name."""
    blocked = [q for q in queues if q.status == QueueStatus.BLOCKED]
    rest = [q for q in queues if q.status != QueueStatus.BLOCKED]
    blocked.sort(key=lambda q: (q.blocked_since or _FAR_FUTURE, q.queue))
    rest.sort(key=lambda q: q.queue)
    return blocked + rest


def _ticks(interval: float, iterations: int | None) -> Iterator[int]:
    """0, 1, 2, ... with `interval` seconds between; `iterations` of them, or forever."""
    for tick in itertools.count():
        if iterations is not None and tick >= iterations:
            return
        if tick:
            time.sleep(interval)
        yield tick
