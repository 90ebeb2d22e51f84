"""What the pages show, read through the topia's public API: the queues in the order an
operator needs them, their failed (parked) jobs, and counts per status."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..models import Job, QueueInfo, QueueStatus

if TYPE_CHECKING:
    from queuetopia import Queuetopia

# Blocked queues need a person: they come first, then the ones that are moving.
STATUS_ORDER = (
    QueueStatus.BLOCKED,
    QueueStatus.RUNNING,
    QueueStatus.WAITING,
    QueueStatus.PAUSED,
    QueueStatus.IDLE,
)
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
# Failed jobs counted per refresh when QueueInfo does not count them itself.
FAILED_SCAN_LIMIT = 10_000


@dataclass(frozen=True)
class QueueRow:
    """A queue as the overview shows it."""

    info: QueueInfo
    failed: int
    oldest_failed_at: datetime | None


def failed_counts(
    topia: Queuetopia, queues: Sequence[QueueInfo]
) -> dict[str, tuple[int, datetime | None]]:
    """Per queue: failed (parked) jobs and when the oldest of them failed.

    Taken from QueueInfo when it carries them (`failed`, `oldest_failed_at`), else
    counted here from one listing of the scope's failed jobs (up to FAILED_SCAN_LIMIT)."""
    if queues and all(hasattr(q, "failed") for q in queues):
        return {
            q.queue: (getattr(q, "failed", 0), getattr(q, "oldest_failed_at", None)) for q in queues
        }
    counts: dict[str, tuple[int, datetime | None]] = {}
    for job in topia.list_jobs(state="failed", limit=FAILED_SCAN_LIMIT):
        count, oldest = counts.get(job.queue, (0, None))
        at = job.done_at or job.updated_at
        counts[job.queue] = (count + 1, at if oldest is None or at < oldest else oldest)
    return counts


def queue_rows(topia: Queuetopia, queues: Sequence[QueueInfo]) -> list[QueueRow]:
    """Every queue with its failed count, blocked first (longest blocked at the top),
    then running, waiting, paused and idle, each by name."""
    counts = failed_counts(topia, queues)
    rows = [QueueRow(shown_queue(topia, q), *counts.get(q.queue, (0, None))) for q in queues]
    return sorted(rows, key=_rank)


def _rank(row: QueueRow) -> tuple[int, datetime, str]:
    info = row.info
    blocked = info.status == QueueStatus.BLOCKED
    since = (info.blocked_since or _FAR_FUTURE) if blocked else _FAR_FUTURE
    return STATUS_ORDER.index(info.status), since, info.queue


def shown_queue(topia: Queuetopia, info: QueueInfo) -> QueueInfo:
    """The queue with its head's sensitive params masked."""
    if info.head is None:
        return info
    return info.model_copy(update={"head": shown(topia, info.head)})


def shown(topia: Queuetopia, job: Job) -> Job:
    """The job as people may see it: params its action marks sensitive are masked."""
    return job.model_copy(update={"params": topia.shown_params(job)})


def status_counts(rows: Sequence[QueueRow]) -> dict[str, int]:
    counts = {status.value: 0 for status in STATUS_ORDER}
    for row in rows:
        counts[row.info.status.value] += 1
    return counts


def matches(row: QueueRow, pattern: str, status: str) -> bool:
    """A glob on the queue name (plain text matches anywhere in it) and a status."""
    if status and row.info.status.value != status:
        return False
    if not pattern:
        return True
    glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
    return fnmatch.fnmatchcase(row.info.queue, glob)
