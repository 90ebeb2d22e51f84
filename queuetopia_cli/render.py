"""All rich output of the CLI: tables and live views built from library models."""

from __future__ import annotations

from datetime import datetime

from rich.table import Table
from rich.text import Text

from queuetopia import QueueInfo

STATUS_STYLE = {
    "running": "green",
    "blocked": "bold red",
    "waiting": "yellow",
    "paused": "magenta",
    "idle": "dim",
}


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
    span = _span(abs(seconds))
    return f"in {span}" if seconds > 0 else f"{span} ago"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def queues_table(queues: list[QueueInfo], title: str | None = None) -> Table:
    table = Table(title=title, expand=False)
    for column in (
        "queue",
        "status",
        "pending",
        "head",
        "next attempt",
        "blocked since",
        "last error",
        "locked by",
    ):
        table.add_column(column, overflow="fold")
    for info in queues:
        head = info.head
        table.add_row(
            info.queue,
            Text(info.status.value, style=STATUS_STYLE.get(info.status.value, "")),
            str(info.pending),
            f"#{head.id} {head.action} {head.attempts}/{head.max_attempts}" if head else "",
            when(info.next_attempt_at),
            when(info.blocked_since),
            short(info.last_error),
            info.locked_by or "",
        )
    return table
