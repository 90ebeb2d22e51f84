"""A steady load with a snapshot held open (`snapshot`): does the engine keep up while a
report, a `pg_dump` or a forgotten session keeps vacuum from removing dead rows?

1. Two worker processes start, idle (default concurrency).
2. Held case: a separate connection runs `BEGIN ISOLATION LEVEL REPEATABLE READ` and
   one query, and stays in that transaction: its snapshot (`backend_xmin`) is held.
3. A producer process (bench/steady_producer.py) enqueues `rate` jobs/s round-robin
   over `queues` queues plus `hot_rate` jobs/s on one hot queue, for `seconds`.
4. The snapshot is released; the workers get `drain_limit` seconds to finish.
5. Per window (5 s), from the database's own timestamps: jobs done/s (all, and the hot
   queue's), the backlog at the window's end (jobs enqueued and not done, in seconds
   of work at the arrival rate), and the age of the oldest job that was due and not
   started then. Verdict: the backlog never above 1 s of work while the load runs,
   and the last minute's throughput at least 80 % of the first (on runs shorter than
   three minutes: the last third against the first).

Every job is checked as in the drains (once, in order per queue, no overlap).
Without the snapshot it is the baseline. Every wait is bounded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .context import Context, SnapshotShape
from .db import BenchDatabase, reset
from .procs import ROOT, Workers
from .verify import check_ran
from .windows import Timeline, windows
from .workloads import IN_LINE, wait_for

Metrics = dict[str, Any]


class Snapshot:
    """A REPEATABLE READ transaction on its own connection, holding its snapshot."""

    def __init__(self, db: BenchDatabase) -> None:
        self.conn = db.connect(autocommit=False)
        self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        self.conn.execute("SELECT count(*) FROM queuetopia_jobs").fetchone()
        row = self.conn.execute("SELECT pg_backend_pid()").fetchone()
        self.pid = row[0] if row else None

    def xmin_age(self, other: Any) -> int | None:
        """How many transactions old the held snapshot's xmin is (None: not held)."""
        row = other.execute(
            "SELECT age(backend_xmin) FROM pg_stat_activity WHERE pid = %s", [self.pid]
        ).fetchone()
        return row[0] if row else None

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


def steady_load(ctx: Context, held: bool) -> Metrics:
    shape = ctx.sizes.snapshot
    scope = f"snapshot-{uuid.uuid4().hex[:8]}"
    reset(ctx.db)
    workers = ctx.workers(scope, 2)
    out = Path(tempfile.mkdtemp(prefix="queuetopia-bench-producer-")) / "produced.json"
    snap: Snapshot | None = None
    facts: Metrics = {}
    try:
        workers.start()
        snap = Snapshot(ctx.db) if held else None
        facts = _load(ctx, shape, scope, out, workers, snap)
        if snap is not None:
            snap.release()
        facts["drained"] = _drain(ctx, shape, scope, workers)
    finally:
        if snap is not None:
            snap.release()
        logs = workers.stop()
        warnings = workers.warnings()
        workers.cleanup()
        shutil.rmtree(out.parent, ignore_errors=True)
    return _metrics(ctx, shape, scope, facts, logs, workers, warnings)


def _load(
    ctx: Context,
    shape: SnapshotShape,
    scope: str,
    out: Path,
    workers: Workers,
    snap: Snapshot | None,
) -> Metrics:
    """Run the producer for `shape.seconds`; what it sent, and the snapshot's age."""
    cmd = [sys.executable, str(ROOT / "bench" / "steady_producer.py"), "--scope", scope]
    cmd += ["--seconds", str(shape.seconds), "--rate", str(shape.rate)]
    cmd += ["--queues", str(shape.queues), "--hot-rate", str(shape.hot_rate), "--out", str(out)]
    env = {**os.environ, "QUEUETOPIA_DSN": ctx.db.dsn}
    facts: Metrics = {"producer_failed": None}
    errors = out.with_suffix(".log")
    with (
        open(errors, "wb") as err,
        subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=err) as producer,
    ):
        _watch(ctx, producer, shape.seconds)
        if producer.poll() is None:
            producer.kill()
            facts["producer_failed"] = "the producer overran its time by 60 s and was killed"
        if producer.wait() != 0 and facts["producer_failed"] is None:
            tail = errors.read_text(errors="replace")[-500:]
            facts["producer_failed"] = f"the producer failed: {tail}"
    with ctx.db.connect() as conn:
        facts["xmin_age_at_end"] = snap.xmin_age(conn) if snap is not None else None
        facts["dead_tuples_at_end"] = _dead_tuples(conn)
    facts["workers_alive"] = workers.alive()
    facts["produced"] = json.loads(out.read_text()) if out.exists() else {}
    return facts


def _watch(ctx: Context, producer: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait for the producer (at most 60 s past its time), saying how far it is."""
    started = time.monotonic()
    next_note = 30.0
    while producer.poll() is None and (elapsed := time.monotonic() - started) < seconds + 60:
        if elapsed >= next_note:
            ctx.log(f"  snapshot: {elapsed:.0f} s of {seconds:g} s")
            next_note += 30.0
        time.sleep(0.2)


def _dead_tuples(conn: Any) -> int | None:
    row = conn.execute(
        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'queuetopia_jobs'"
    ).fetchone()
    return int(row[0]) if row else None


def _drain(ctx: Context, shape: SnapshotShape, scope: str, workers: Workers) -> bool:
    """After the load: the backlog done within `drain_limit` seconds?"""
    with ctx.db.connect() as conn:
        return wait_for(conn, IN_LINE, [scope], lambda v: not v, workers, shape.drain_limit, 0.1)


def _metrics(
    ctx: Context,
    shape: SnapshotShape,
    scope: str,
    facts: Metrics,
    logs: Any,
    workers: Workers,
    warnings: list[str],
) -> Metrics:
    produced = facts.get("produced") or {}
    drained = bool(facts.get("drained"))
    failures = [f for f in (facts.get("producer_failed"),) if f]
    if not drained:
        failures.append(f"the backlog was not done {shape.drain_limit:g} s after the load")
    killed = not workers.stopped_cleanly
    notes: list[str] = []
    with ctx.db.connect() as conn:
        timeline = Timeline.load(conn, scope)
        expected = produced.get("jobs", timeline.total)
        problems = check_ran(
            conn, scope, expected, logs, complete=drained, killed=killed, notes=notes
        )
    if not ctx.timing:
        problems += failures  # the smoke load is small enough for any engine
    rate = shape.rate + shape.hot_rate
    summary = windows(timeline, shape, rate)
    return {
        "held": facts.get("xmin_age_at_end") is not None,
        "jobs": expected,
        "arrival_jobs_per_s": rate,
        "producer_jobs_per_s": round(expected / produced["seconds"], 1)
        if produced.get("seconds")
        else None,
        "producer_lag_p99_ms": produced.get("lag_p99_ms"),
        "producer_lag_max_ms": produced.get("lag_max_ms"),
        "xmin_age_at_end": facts.get("xmin_age_at_end"),
        "dead_tuples_at_end": facts.get("dead_tuples_at_end"),
        "drained": drained,
        **summary,
        "failure": "; ".join(failures) or None,
        "warnings": warnings[:5] + notes,
        "problems": problems,
    }
