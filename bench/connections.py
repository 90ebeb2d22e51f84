"""Connections per worker process (`connections`): one worker at a given concurrency,
idle, then draining a small set, then idle again; its PostgreSQL connections counted
all along.

How a connection is known to be the worker's: the run's database is a throwaway one
that nothing else uses, and during this workload the bench holds exactly one
connection to it (the sampler, which also enqueues the jobs). So every client backend
in `pg_stat_activity` for that database, other than the sampler's own
(`pg_backend_pid()`), is the worker's. That holds whatever the engine puts in
`application_name` (the current one sets `queuetopia` on every connection, which says
nothing about the process), over TCP and Unix sockets alike (a Unix socket has no
client port to match against /proc), and for a server on another machine. Before the
worker starts, the sampler waits until it is alone in the database, so no earlier
connection is counted. The application names seen are reported alongside.

The drain: 2 x concurrency jobs over `concurrency` queues, each awaiting 100 ms
(`async def`), enqueued interleaved in one transaction, so every slot has work."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .apps import make_topia
from .arrival import INTERLEAVED, enqueue_arrival
from .context import Context
from .db import max_connections, queue_name, reset
from .iobound import TOO_MANY
from .procs import Workers
from .verify import check_ran

Metrics = dict[str, Any]
DELAY = 0.1
SAMPLE_EVERY = 0.01
OTHERS = """
SELECT coalesce(application_name, ''), count(*) FROM pg_stat_activity
 WHERE datname = current_database() AND backend_type = 'client backend'
   AND pid <> pg_backend_pid()
 GROUP BY 1"""
PENDING = """
SELECT count(*) FILTER (WHERE state <> 'done') FROM queuetopia_jobs WHERE scope = %s"""


@dataclass
class Samples:
    """Connection counts seen in each phase, and the application names at the peak."""

    counts: dict[str, list[int]] = field(default_factory=dict)
    names: Counter[str] = field(default_factory=Counter)
    peak: int = -1

    def add(self, phase: str, conn: Any) -> None:
        rows = conn.execute(OTHERS).fetchall()
        total = sum(n for _, n in rows)
        self.counts.setdefault(phase, []).append(total)
        if total > self.peak:
            self.peak, self.names = total, Counter(dict(rows))

    def most(self, *phases: str) -> int | None:
        values = [v for p in phases for v in self.counts.get(p, [])]
        return max(values) if values else None


def per_worker(ctx: Context, concurrency: int) -> Metrics:
    scope = f"connections-{uuid.uuid4().hex[:8]}"
    reset(ctx.db)
    limit = max_connections(ctx.db)
    jobs, deadline = 2 * concurrency, ctx.sizes.connections_limit
    workers = ctx.workers(scope, 1, concurrency=concurrency)
    samples = Samples()
    failures: list[str] = []
    finished = False
    with ctx.db.connect() as conn:
        _until_alone(conn)
        try:
            workers.start(timeout=60.0)
            _sample_for(conn, samples, "idle before", ctx.sizes.connections_idle)
            _enqueue(ctx, conn, scope, concurrency)
            finished = _sample_drain(conn, samples, scope, workers, deadline)
            _sample_for(conn, samples, "idle after", ctx.sizes.connections_idle)
        except RuntimeError as exc:
            failures.append(str(exc)[:300])
        finally:
            logs = workers.stop(timeout=45.0)
            told = workers.count_in_output(TOO_MANY)
            warnings = workers.warnings()
            workers.cleanup()
    if not finished:
        failures += workers.died() or [f"not every job done within {deadline:.0f}s"]
    if told:
        failures.append(f"the worker logged '{TOO_MANY}' {told} time(s)")
    killed = not workers.stopped_cleanly
    notes: list[str] = []
    lost: list[str] | None = [] if told else None  # allowed after refusals (bench/iobound.py)
    with ctx.db.connect() as conn:
        problems = check_ran(
            conn, scope, jobs, logs, complete=finished, killed=killed, lost=lost, notes=notes
        )
    failures += [f"after the refusals: {r}" for r in lost or []]
    if not ctx.timing and failures:
        problems += failures  # smoke sizes fit any engine
    return {
        "concurrency": concurrency,
        "max_connections": limit,
        "idle_max": samples.most("idle before", "idle after"),
        "idle_before_max": samples.most("idle before"),
        "draining_max": samples.most("draining"),
        "idle_after_max": samples.most("idle after"),
        "samples": sum(len(v) for v in samples.counts.values()),
        "application_names_at_peak": dict(samples.names),
        "finished": finished,
        "too_many_clients_logged": told,
        "failure": "; ".join(failures) or None,
        "warnings": warnings[:5] + notes,
        "problems": problems,
    }


def _until_alone(conn: Any, timeout: float = 10.0) -> None:
    """Wait for the connections of earlier workloads to be gone from the database."""
    deadline = time.monotonic() + timeout
    while rows := conn.execute(OTHERS).fetchall():
        if time.monotonic() > deadline:
            raise RuntimeError(f"other connections to the bench database stay: {rows}")
        time.sleep(0.05)


def _sample_for(conn: Any, samples: Samples, phase: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.add(phase, conn)
        time.sleep(SAMPLE_EVERY)


def _enqueue(ctx: Context, conn: Any, scope: str, concurrency: int) -> None:
    """Through the sampler's own connection: the producer opens none of its own."""
    with make_topia(ctx.db.dsn, scope) as topia, conn.transaction():
        shape = (concurrency, 2, INTERLEAVED)
        enqueue_arrival(
            topia, conn, "sleep_async", shape, queue_name, lambda _q, i: {"d": DELAY, "i": i}
        )


def _sample_drain(
    conn: Any, samples: Samples, scope: str, workers: Workers, timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    checked = 0.0
    while time.monotonic() < deadline:
        samples.add("draining", conn)
        if time.monotonic() - checked > 0.05:
            checked = time.monotonic()
            row = conn.execute(PENDING, [scope]).fetchone()
            if row is not None and row[0] == 0:
                return True
            if not workers.alive():
                return False
        time.sleep(SAMPLE_EVERY)
    return False
