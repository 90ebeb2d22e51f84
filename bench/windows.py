"""Per-window figures of a steady load, from the jobs' own timestamps (the database's
clock, so the workers' and the bench's clocks do not enter): jobs done per second,
the backlog and the oldest job waiting, at the end of each window."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

from .context import SnapshotShape

Metrics = dict[str, Any]
HOT = "hot"
TIMES = """
WITH t AS (SELECT min(inserted_at) AS t0 FROM queuetopia_jobs WHERE scope = %(s)s)
SELECT extract(epoch FROM j.inserted_at - t.t0)::float8,
       extract(epoch FROM j.scheduled_at - t.t0)::float8,
       extract(epoch FROM j.attempted_at - t.t0)::float8,
       extract(epoch FROM j.done_at - t.t0)::float8,
       j.queue = %(hot)s
  FROM queuetopia_jobs j, t WHERE j.scope = %(s)s"""


@dataclass
class Timeline:
    """Seconds from the first enqueue: when each job arrived, was done (all, and the
    hot queue's), and (sorted by start) when each started and was due."""

    arrived: list[float]
    done: list[float]
    hot_done: list[float]
    started: list[float]  # ascending; never started: inf
    due_min_after: list[float]  # min due time of the jobs from this index of `started` on

    @property
    def total(self) -> int:
        return len(self.arrived)

    @classmethod
    def load(cls, conn: Any, scope: str) -> Timeline:
        rows = conn.execute(TIMES, {"s": scope, "hot": HOT}).fetchall()
        inf = math.inf
        done = sorted(r[3] for r in rows if r[3] is not None)
        hot_done = sorted(r[3] for r in rows if r[3] is not None and r[4])
        by_start = sorted((inf if r[2] is None else r[2], r[1]) for r in rows)
        suffix = [inf] * (len(by_start) + 1)
        for k in range(len(by_start) - 1, -1, -1):
            suffix[k] = min(suffix[k + 1], by_start[k][1])
        started = [s for s, _ in by_start]
        return cls(sorted(r[0] for r in rows), done, hot_done, started, suffix)

    def oldest_waiting(self, t: float) -> float:
        """Age at `t` of the oldest job due by then and not yet started (0: none)."""
        due = self.due_min_after[bisect.bisect_right(self.started, t)]
        return t - due if due <= t else 0.0

    def backlog(self, t: float) -> int:
        """Jobs enqueued by `t` and not done by then."""
        return bisect.bisect_left(self.arrived, t) - bisect.bisect_left(self.done, t)


def _count(sorted_times: list[float], a: float, b: float) -> int:
    return bisect.bisect_left(sorted_times, b) - bisect.bisect_left(sorted_times, a)


def windows(tl: Timeline, shape: SnapshotShape, rate: float) -> Metrics:
    """The per-window table, and the verdict's figures: the largest backlog (in
    seconds of work at the arrival `rate`), and the last minute's throughput over the
    first's (the last third over the first on runs under three minutes)."""
    w, seconds = shape.window, shape.seconds
    rows = []
    for k in range(int(seconds // w)):
        a, b = k * w, (k + 1) * w
        rows.append(
            {
                "t": round(b, 1),
                "jobs_per_s": round(_count(tl.done, a, b) / w, 1),
                "hot_jobs_per_s": round(_count(tl.hot_done, a, b) / w, 1),
                "backlog_s": round(tl.backlog(b) / rate, 3),
                "oldest_wait_s": round(tl.oldest_waiting(b), 3),
            }
        )
    span = min(60.0, seconds / 3)

    def per_s(times: list[float], a: float) -> float:
        return round(_count(times, a, a + span) / span, 1)

    first, last = per_s(tl.done, 0.0), per_s(tl.done, seconds - span)
    hot_first, hot_last = per_s(tl.hot_done, 0.0), per_s(tl.hot_done, seconds - span)
    return {
        "jobs_per_s": round(_count(tl.done, 0.0, seconds) / seconds, 1),
        "span_s": round(span, 1),
        "first_jobs_per_s": first,
        "last_jobs_per_s": last,
        "last_over_first": round(last / first, 3) if first else None,
        "hot_first_jobs_per_s": hot_first,
        "hot_last_jobs_per_s": hot_last,
        "hot_last_over_first": round(hot_last / hot_first, 3) if hot_first else None,
        "max_backlog_s": max((r["backlog_s"] for r in rows), default=None),
        "max_oldest_wait_s": max((r["oldest_wait_s"] for r in rows), default=None),
        "windows": rows,
    }
