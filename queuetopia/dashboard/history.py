"""The age of the oldest blocked head over the last hour.

The tables keep no history of blocks that have ended (a head that succeeds forgets when
it started failing), and the worker keeps no rollup: its hot path pays nothing. So the
dashboard samples the queues it reads anyway, at most every SAMPLE_EVERY seconds while
someone has it open, and fills the past from the heads that are blocked now (a head
blocked since 10:02 was blocked at every minute after 10:02). See docs/dashboard.md.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..models import QueueInfo, QueueStatus

SAMPLE_EVERY = timedelta(seconds=10)
KEEP = timedelta(hours=1)
# A sample keeps the ages of this many of the longest blocked queues: the memory of the
# history stays bounded however many queues are blocked at once.
QUEUES_PER_SAMPLE = 200


@dataclass(frozen=True)
class Sample:
    at: datetime
    ages: dict[str, float]  # queue -> seconds its head had been blocked


class BlockedHistory:
    """Samples of blocked heads' ages, kept for an hour, shared by the app's requests."""

    def __init__(self) -> None:
        self._samples: deque[Sample] = deque()
        self._lock = threading.Lock()

    def record(self, now: datetime, queues: Sequence[QueueInfo]) -> None:
        """Keep a sample of `queues` unless the last one is younger than SAMPLE_EVERY."""
        with self._lock:
            if self._samples and now - self._samples[-1].at < SAMPLE_EVERY:
                return
            ages = blocked_ages(now, queues)
            longest = sorted(ages, key=ages.__getitem__, reverse=True)[:QUEUES_PER_SAMPLE]
            self._samples.append(Sample(now, {q: ages[q] for q in longest}))
            while self._samples and now - self._samples[0].at > KEEP:
                self._samples.popleft()

    def per_minute(
        self,
        now: datetime,
        queues: Sequence[QueueInfo],
        queue: str | None = None,
        minutes: int = 60,
    ) -> list[tuple[datetime, float]]:
        """(minute, oldest blocked age in seconds during it), oldest minute first, for
        the scope or one queue: the samples of that minute, and the heads blocked now."""
        with self._lock:
            samples = list(self._samples)
        start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
        peaks = [0.0] * minutes
        for sample in samples:
            index = int((sample.at - start).total_seconds() // 60)
            if 0 <= index < minutes:
                ages = [a for q, a in sample.ages.items() if queue is None or q == queue]
                peaks[index] = max([peaks[index], *ages])
        points = []
        for i, peak in enumerate(peaks):
            minute = start + timedelta(minutes=i)
            end = min(minute + timedelta(minutes=1), now)
            points.append((minute, max(peak, _ongoing(end, queues, queue))))
        return points


def blocked_ages(now: datetime, queues: Sequence[QueueInfo]) -> dict[str, float]:
    return {
        q.queue: max((now - q.blocked_since).total_seconds(), 0.0)
        for q in queues
        if q.status == QueueStatus.BLOCKED and q.blocked_since is not None
    }


def _ongoing(end: datetime, queues: Sequence[QueueInfo], queue: str | None) -> float:
    """The age at `end` of the oldest of the heads blocked now that were blocked then."""
    ages = [
        (end - q.blocked_since).total_seconds()
        for q in queues
        if q.status == QueueStatus.BLOCKED
        and q.blocked_since is not None
        and q.blocked_since <= end
        and (queue is None or q.queue == queue)
    ]
    return max(ages, default=0.0)
