"""All output of the CLI: rich tables, views, messages and progress for people, JSON for
programs. Built from library models; no command logic here."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from rich.console import Console, Group, RenderableType
from rich.json import JSON
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from queuetopia import Job, JobState, OperatorAction, QueueInfo, RateLimit
from queuetopia.durations import span

# Output to a file or pipe is laid out 120 columns wide unless $COLUMNS says otherwise
# (rich's 80 would fold most tables); a terminal's own width always wins.
PIPE_WIDTH = 120
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH)
err_console = Console(stderr=True)

STATUS_STYLE = {
    "running": "green",
    "blocked": "bold red",
    "waiting": "yellow",
    "paused": "magenta",
    "idle": "dim",
}
STATE_STYLE = {
    "pending": "yellow",
    "running": "green",
    "done": "dim green",
    "failed": "bold red",
    "cancelled": "dim",
    "retry": "yellow",
    "parked": "bold red",
}


# -- small formatters ----------------------------------------------------------------


def short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def when(moment: datetime | None, now: datetime | None = None) -> str:
    """A time as a person reads it: 'in 4s', '2m ago'."""
    if moment is None:
        return ""
    now = now or datetime.now(moment.tzinfo)
    seconds = (moment - now).total_seconds()
    text = span(abs(seconds))
    return f"in {text}" if seconds > 0 else f"{text} ago"


def stamp(moment: datetime | None) -> str:
    """An exact time with its distance from now: '2026-01-02 09:00:00+00:00 (3m ago)'."""
    if moment is None:
        return "—"
    return f"{moment.isoformat(sep=' ', timespec='seconds')} ({when(moment)})"


def duration(length: timedelta) -> str:
    return span(length.total_seconds())


def _status(value: str) -> Text:
    return Text(value, style=STATUS_STYLE.get(value, ""))


def _state(value: str) -> Text:
    return Text(value, style=STATE_STYLE.get(value, ""))


def _attempts(job: Job) -> str:
    return f"{job.attempts}/{job.max_attempts}"


def _head(job: Job | None) -> str:
    return f"#{job.id} {job.action} {_attempts(job)}" if job else ""


def _due(job: Job) -> datetime:
    return max(job.scheduled_at, job.next_attempt_at or job.scheduled_at)


def next_attempt(info: QueueInfo) -> str:
    """When the head of a queue runs next, in human time."""
    head = info.head
    if head is None:
        return ""
    if head.state == "running":
        return "running now"
    if head.state == "failed":
        return "needs an operator"
    if info.paused:
        return "when resumed"
    if info.held_by is not None:
        return info.held_by
    if info.rate_limited_until is not None:
        return rate_limited(info)
    due = _due(head)
    return when(due) if due > datetime.now(due.tzinfo) else "due now"


def rate_limited(info: QueueInfo) -> str:
    """'rate limited (webhooks), next in 2s': a due head waiting for its budget."""
    return f"rate limited ({info.rate_limited_by}), next {when(info.rate_limited_until)}"


def _failed(info: QueueInfo) -> Text:
    """Failed jobs the queue moved past, and the age of the oldest: '3 (oldest 2h ago)'."""
    if not info.failed:
        return Text("")
    return Text(f"{info.failed} (oldest {when(info.oldest_failed_at)})", style="red")


def _lease(info: QueueInfo) -> str:
    if not info.locked_by:
        return ""
    return f"{info.locked_by} (expires {when(info.locked_until)})"


# -- tables and views ------------------------------------------------------------------


def queues_table(queues: Sequence[QueueInfo], title: str | None = None) -> Table:
    """One row per queue: status, pending, head, next attempt, blocked since, error, lease."""
    table = Table(title=title, expand=False)
    table.add_column("queue", overflow="fold", min_width=6)
    table.add_column("status", no_wrap=True)
    table.add_column("pending", justify="right", no_wrap=True)
    table.add_column("head", overflow="fold", min_width=10)
    table.add_column("next attempt")
    table.add_column("blocked since")
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("last error", overflow="fold")
    table.add_column("lease", overflow="fold")
    for info in queues:
        table.add_row(
            info.queue,
            _status(info.status.value),
            str(info.pending),
            _head(info.head),
            next_attempt(info),
            when(info.blocked_since),
            _failed(info),
            Text(short(info.last_error), style="red"),
            _lease(info),
        )
    if not queues:
        table.caption = "no queues in this scope yet"
    return table


def inspect_frame(queues: Sequence[QueueInfo], scope: str) -> Table:
    """One frame of `inspect`: the queues table titled with the scope and the time."""
    title = f"queuetopia inspect · scope {scope!r} · {datetime.now().strftime('%H:%M:%S')}"
    return queues_table(queues, title=title)


def jobs_table(jobs: Sequence[Job]) -> Table:
    table = Table(expand=False)
    for column in ("id", "queue", "action", "state", "attempts", "scheduled", "params", "error"):
        table.add_column(column, overflow="fold", justify="right" if column == "id" else "left")
    for job in jobs:
        table.add_row(
            str(job.id),
            job.queue,
            job.action,
            _state(job.state.value),
            _attempts(job),
            when(job.scheduled_at),
            short(json.dumps(job.params, ensure_ascii=False), 40),
            Text(short(job.error, 50), style="red"),
        )
    if not jobs:
        table.caption = "no matching jobs"
    return table


def job_view(job: Job, queue: QueueInfo | None = None) -> RenderableType:
    """Everything about one job: its fields, params and result as JSON, the full error;
    with its `queue`, whether it waits there for a rate limit's budget."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column(overflow="fold")
    rows: list[tuple[str, str | Text]] = [
        ("id", str(job.id)),
        ("scope", job.scope),
        ("queue", job.queue),
        ("action", job.action),
        ("state", _state(job.state.value)),
        ("attempts", f"{_attempts(job)} (on exhausted: {job.on_exhausted})"),
        ("timeout", f"{job.timeout:g}s"),
        ("max backoff", f"{job.max_backoff:g}s"),
        ("scheduled at", stamp(job.scheduled_at)),
        ("next attempt at", stamp(job.next_attempt_at) + (" (snoozed)" if job.snoozed else "")),
        ("attempted at", stamp(job.attempted_at)),
        ("attempted by", job.attempted_by or "—"),
        ("failing since", stamp(job.failing_since)),
        (_ended_label(job), stamp(job.done_at)),
        ("unique key", job.unique_key or "—"),
        ("depends on", ", ".join(f"#{i}" for i in job.depends_on) or "—"),
        ("inserted at", stamp(job.inserted_at)),
        ("updated at", stamp(job.updated_at)),
    ]
    head = queue is not None and queue.head is not None and queue.head.id == job.id
    if head and queue is not None and queue.held_by is not None:
        rows.insert(5, ("waiting", queue.held_by))
    if head and queue is not None and queue.rate_limited_until is not None:
        until = stamp(queue.rate_limited_until)
        rows.insert(5, ("rate limited", f"by {queue.rate_limited_by}, next at {until}"))
    for name, value in rows:
        fields.add_row(name, value)
    parts: list[RenderableType] = [
        Panel(fields, title=f"job {job.id}", title_align="left"),
        Panel(JSON.from_data(job.params), title="params", title_align="left"),
    ]
    if job.result is not None:
        parts.append(Panel(JSON.from_data(job.result), title="result", title_align="left"))
    if job.error:
        parts.append(Panel(Text(job.error), title="error", title_align="left", border_style="red"))
    if job.attempt_log:
        parts.append(Panel(attempts_table(job), title="attempts", title_align="left"))
    if job.operator_log:
        parts.append(Panel(operator_table(job.operator_log), title="operators", title_align="left"))
    return Group(*parts)


def _ended_label(job: Job) -> str:
    """A failed job 'failed at', a cancelled one 'cancelled at': not 'done at'."""
    return {"failed": "failed at", "cancelled": "cancelled at"}.get(job.state.value, "done at")


def attempts_table(job: Job) -> Table:
    """One row per attempt in the job's history: start, end, node, outcome, error."""
    table = Table(expand=False, box=None)
    for column in ("#", "started", "ended", "took", "node", "outcome", "error"):
        table.add_column(column, overflow="fold")
    for entry in job.attempt_log:
        took = (
            f"{(entry.ended_at - entry.started_at).total_seconds():.3f}s"
            if entry.started_at and entry.ended_at
            else ""
        )
        table.add_row(
            str(entry.attempt),
            stamp(entry.started_at),
            stamp(entry.ended_at),
            took,
            entry.node or "",
            _state(entry.outcome),
            Text(short(entry.error, 60), style="red"),
        )
    return table


def operator_table(log: Sequence[OperatorAction]) -> Table:
    """Who did what to a job or queue, when and why."""
    table = Table(expand=False, box=None)
    for column in ("action", "by", "at", "reason"):
        table.add_column(column, overflow="fold")
    for entry in log:
        table.add_row(entry.action, entry.by, stamp(entry.at), entry.reason or "")
    return table


# -- messages ---------------------------------------------------------------------------


def _about(job: Job) -> str:
    return f"job {job.id} ({job.action} in queue {job.queue!r})"


def retried(before: Job, after: Job) -> str:
    return (
        f"retried {_about(after)}: {before.state.value} → {after.state.value}, "
        f"due {next_due(after)}, attempts {_attempts(after)}"
    )


def cancelled(before: Job, after: Job) -> str:
    if after.state == JobState.RUNNING:
        return (
            f"cancel requested for {_about(after)}: its worker stops it, then it ends"
            f" cancelled and queue {after.queue!r} moves on (unless it is done first)"
        )
    return (
        f"cancelled {_about(after)}: {before.state.value} → {after.state.value}; "
        f"queue {after.queue!r} moves on"
    )


def limits_table(limits: Sequence[RateLimit]) -> Table:
    table = Table("limit", "queues", "budget", "rate", "burst", "set by", "set at")
    for item in limits:
        budget = "shared" if item.shared else "per queue"
        table.add_row(
            item.name,
            item.queues,
            budget,
            item.rate,
            str(item.burst),
            item.set_by or "",
            when(item.set_at) if item.set_at else "",
        )
    return table


def next_due(job: Job) -> str:
    due = _due(job)
    return when(due) if due > datetime.now(due.tzinfo) else "now"


def paused(info: QueueInfo) -> str:
    running = " (its running job finishes)" if info.head and info.head.state == "running" else ""
    return f"paused queue {info.queue!r}: it starts no new job{running}; {info.pending} pending"


def resumed(info: QueueInfo) -> str:
    return f"resumed queue {info.queue!r}: {info.pending} pending"


def enqueued(jobs: Sequence[Job]) -> str:
    if len(jobs) == 1:
        return f"enqueued {_about(jobs[0])}, due {next_due(jobs[0])}"
    if not jobs:
        return "enqueued no job: the file has no lines"
    first = jobs[0]
    return (
        f"enqueued {len(jobs)} {first.action} jobs in queue {first.queue!r}, due {next_due(first)}"
    )


def pruned(count: int, older_than: timedelta) -> str:
    return f"pruned {count} done or cancelled job(s) finished more than {duration(older_than)} ago"


# -- JSON, live views and progress ------------------------------------------------------


def to_json(data: BaseModel | Sequence[BaseModel] | dict[str, Any], *, pretty: bool = True) -> str:
    """Models (or a list of them) as JSON text, the way `--json` prints them."""
    if isinstance(data, BaseModel):
        plain: Any = data.model_dump(mode="json")
    elif isinstance(data, dict):
        plain = data
    else:
        plain = [item.model_dump(mode="json") for item in data]
    return json.dumps(plain, indent=2 if pretty else None, ensure_ascii=False)


@contextmanager
def live_view() -> Iterator[Live]:
    """A view redrawn in place; in a file or pipe, only its last frame is printed."""
    with Live(console=console, auto_refresh=False, transient=False) as live:
        yield live
    if not console.is_terminal:
        console.line()


def progress_bar() -> Progress:
    """Progress of long work on stderr (stdout may carry --json), in a terminal only;
    it disappears once done."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


def say(message: str) -> None:
    """A line for people on stdout (markup is not interpreted)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def show(renderable: RenderableType) -> None:
    console.print(renderable)


# -- operator selections ---------------------------------------------------------------


def would(verb: str, items: Sequence[str], noun: str) -> str:
    """What a dry run found."""
    if not items:
        return f"dry run: no {noun} to {verb}"
    return f"dry run: would {verb} {len(items)} {noun}(s): " + ", ".join(items)


def changed_jobs(verb: str, jobs: Sequence[Job], selected: int) -> str:
    done = {"retry": "retried", "cancel": "cancelled"}[verb]
    if not jobs:
        return f"{done} no job" + (
            f" ({selected} selected had changed meanwhile)" if selected else ""
        )
    left = selected - len(jobs)
    skipped = f"; {left} selected had changed meanwhile and were left" if left else ""
    queues = sorted({job.queue for job in jobs})
    return (
        f"{done} {len(jobs)} job(s) in {len(queues)} queue(s): "
        + ", ".join(f"#{job.id}" for job in jobs)
        + skipped
    )


def changed_queues(verb: str, queues: Sequence[str]) -> str:
    done = {"pause": "paused", "resume": "resumed"}[verb]
    if not queues:
        return f"{done} no queue"
    return f"{done} {len(queues)} queue(s): " + ", ".join(queues)
