"""Jobs done and failed per minute, read incrementally: the first read of a chart takes
the whole hour, later reads only the last few minutes, so a page refreshing every few
seconds costs what the last minutes cost, not the hour (docs/dashboard.md)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..models import MinuteCounts

if TYPE_CHECKING:
    from queuetopia import Queuetopia

MINUTES = 60
REREAD_MINUTES = 2  # the current minute and the one before, which may still change
FULL_EVERY = 300.0  # seconds: re-read the hour now and then (retries, pruning)
CHARTS_KEPT = 100  # queues whose chart is cached (the least recently read go first)


@dataclass
class _Chart:
    read_fully_at: float
    minutes: dict[datetime, MinuteCounts] = field(default_factory=dict)


class CountsCache:
    def __init__(self) -> None:
        self._charts: OrderedDict[str | None, _Chart] = OrderedDict()
        self._lock = threading.Lock()

    def per_minute(self, topia: Queuetopia, queue: str | None) -> list[MinuteCounts]:
        """The last MINUTES minutes, oldest first, for the scope (None) or one queue."""
        with self._lock:
            chart = self._charts.get(queue)
        full = chart is None or time.monotonic() - chart.read_fully_at > FULL_EVERY
        fresh = topia.job_counts_per_minute(MINUTES if full else REREAD_MINUTES, queue)
        with self._lock:
            if full or chart is None:
                chart = _Chart(time.monotonic())
            chart.minutes.update((c.minute, c) for c in fresh)
            latest = fresh[-1].minute
            wanted = [latest - timedelta(minutes=i) for i in reversed(range(MINUTES))]
            chart.minutes = {
                m: chart.minutes.get(m) or MinuteCounts(minute=m, done=0, failed=0) for m in wanted
            }
            self._charts[queue] = chart
            self._charts.move_to_end(queue)
            while len(self._charts) > CHARTS_KEPT:
                self._charts.popitem(last=False)
            return list(chart.minutes.values())
