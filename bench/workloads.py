"""The workloads. Each returns a dict of metrics plus `problems` (correctness
failures; an empty list means the run was verified)."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from queuetopia import Queuetopia

from . import db as dbmod
from .apps import make_topia
from .arrival import KEY_BY_KEY, enqueue_arrival
from .context import Context
from .db import counters, queue_name, reset, stat_delta
from .procs import CpuMeter, Workers, proc_status
from .verify import check_enqueued, check_ran, queue_gaps

Metrics = dict[str, Any]


def _scope(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _noop(topia: Queuetopia) -> Any:
    return topia.actions["noop"]


# -- enqueue -------------------------------------------------------------------------


def enqueue_single(ctx: Context) -> Metrics:
    """One job per transaction (`.delay`) from one producer, over 100 queues."""
    n = ctx.sizes.enqueue_single
    scope = _scope("enqueue")
    reset(ctx.db)
    with make_topia(ctx.db.dsn, scope) as topia:
        noop = _noop(topia)
        noop.delay(queue_name(0), i=-1)  # open the pool outside the timing
        before = counters(ctx.db)
        started = time.perf_counter()
        for k in range(n):
            noop.delay(queue_name(k % 100), i=k)
        elapsed = time.perf_counter() - started
    after = counters(ctx.db)
    with ctx.db.connect() as conn:
        problems = check_enqueued(conn, scope, n + 1)
    return {
        "jobs": n,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(n / elapsed, 1),
        **stat_delta(before, after, n),
        "problems": problems,
    }


def enqueue_batch(ctx: Context) -> Metrics:
    """`delay_many` batches of 1,000 jobs, one transaction each, over 10 queues."""
    batches = ctx.sizes.enqueue_batches
    scope = _scope("enqueue-many")
    reset(ctx.db)
    with make_topia(ctx.db.dsn, scope) as topia:
        noop = _noop(topia)
        noop.delay(queue_name(0), i=-1)
        k = 0
        started = time.perf_counter()
        for b in range(batches):
            noop.delay_many(queue_name(b % 10), [{"i": k + j} for j in range(1000)])
            k += 1000
        elapsed = time.perf_counter() - started
    with ctx.db.connect() as conn:
        problems = check_enqueued(conn, scope, k + 1)
    return {
        "jobs": k,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(k / elapsed, 1),
        "problems": problems,
    }


# -- drains ---------------------------------------------------------------------------


def wait_for(
    conn: psycopg.Connection[Any],
    query: str,
    params: list[Any],
    done: Callable[[Any], bool],
    workers: Workers,
    timeout: float,
    interval: float = 0.02,
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(query, params).fetchone()
        if done(row[0] if row else None):
            return True
        if not workers.alive():
            return False
        time.sleep(interval)
    return False


# Is any job still in line? Shaped to match the engine's partial index on in-line jobs
# (an index scan that stops at the first one), so the benchmark's own polling does not
# seq-scan the jobs table and show up as engine cost.
IN_LINE = """
SELECT EXISTS (SELECT 1 FROM queuetopia_jobs WHERE scope = %s AND in_line
                ORDER BY scope, queue, scheduled_at, seq LIMIT 1)"""
DONE_COUNT = "SELECT count(*) FROM queuetopia_jobs WHERE scope = %s AND state = 'done'"


def drain(
    ctx: Context,
    queues: int,
    per_queue: int,
    processes: int,
    log_mode: str | None = None,
    arrival: str = KEY_BY_KEY,
) -> Metrics:
    """Start idle workers, enqueue queues x per_queue no-op jobs through the API in one
    transaction, in the `arrival` order (bench/arrival.py), and time from its commit
    to the last job's done_at."""
    n = queues * per_queue
    scope = _scope("drain")
    reset(ctx.db)
    workers = ctx.workers(scope, processes, log_mode=log_mode)
    problems: list[str] = []
    try:
        workers.start()
        with make_topia(ctx.db.dsn, scope) as topia, ctx.db.connect(autocommit=False) as conn:
            shape = (queues, per_queue, arrival)
            enqueue_arrival(topia, conn, "noop", shape, queue_name, lambda _q, k: {"i": k})
            before = counters(ctx.db)
            meter = CpuMeter(workers.pids, ctx.db.postmaster).start()
            conn.commit()
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            conn.commit()
            assert row is not None
            committed_at = row[0]
            committed_epoch = committed_at.timestamp()
            conn.autocommit = True
            ok = wait_for(conn, IN_LINE, [scope], lambda v: not v, workers, timeout=60 + n / 100)
            meter.stop()
            if not ok:
                problems.append("timed out or a worker died before every job was done")
    finally:
        logs = workers.stop()
        warnings = workers.warnings()
        workers.cleanup()
    if not workers.stopped_cleanly:
        problems.append("a worker did not stop cleanly on SIGTERM")
    after = counters(ctx.db)
    notes: list[str] = []
    with ctx.db.connect() as conn:
        problems += check_ran(conn, scope, n, logs, notes=notes)
        longest_gap, idle, stalls = queue_gaps(conn, scope, logs, committed_epoch)
        row = conn.execute(
            """SELECT extract(epoch FROM max(done_at) - %(t)s)::float8,
                      extract(epoch FROM min(attempted_at) - %(t)s)::float8
                 FROM queuetopia_jobs WHERE scope = %(s)s""",
            {"t": committed_at, "s": scope},
        ).fetchone()
    assert row is not None
    elapsed, first = row
    per_process = sorted((log.count for log in logs), reverse=True)
    return {
        "jobs": n,
        "seconds": round(elapsed or 0.0, 3),
        "jobs_per_s": round(n / elapsed, 1) if elapsed else 0.0,
        "first_start_ms": round((first or 0.0) * 1000, 2),
        "jobs_per_process": per_process,
        "max_queue_gap_ms": round(longest_gap * 1000, 1),
        "max_idle_ms": round(idle * 1000, 1),
        "stalls": len(stalls),
        **meter.per_job(n),
        **stat_delta(before, after, n),
        "warnings": stalls[:5] + warnings[:5] + notes,
        "problems": problems,
    }


def many_queues(ctx: Context, processes: int) -> Metrics:
    q, per = ctx.sizes.many_queues
    return drain(ctx, q, per, processes)


def ordered(ctx: Context, processes: int, arrival: str = KEY_BY_KEY) -> Metrics:
    q, per = ctx.sizes.ordered
    return drain(ctx, q, per, processes, arrival=arrival)


def logging_cost(ctx: Context, log_mode: str, processes: int = 2) -> Metrics:
    """The ordered drain (smaller) with the workers logging as the CLI does."""
    q, per = ctx.sizes.logging
    return drain(ctx, q, per, processes, log_mode)


def one_queue(ctx: Context, processes: int = 1) -> Metrics:
    """One hot queue, and pgbench's one-client one-row update per commit right after
    it on the same server: its ratio to that floor is from the same run."""
    metrics = drain(ctx, 1, ctx.sizes.one_queue, processes)
    exe = _pgbench(ctx)
    if exe is None:
        return metrics
    commits = update_rate(ctx, exe, 1)
    with ctx.db.connect() as conn:
        conn.execute(FLOOR_DROP)
    metrics["floor_1_client_commits_per_s"] = round(commits, 1)
    metrics["x_floor"] = round(metrics["jobs_per_s"] / commits, 3) if commits else None
    return metrics


# -- latency --------------------------------------------------------------------------


def latency(ctx: Context, gap: float = 0.03, warmup: int = 5) -> Metrics:
    """An idle worker; one job at a time; enqueue commit -> action start."""
    n = ctx.sizes.latency_samples
    scope = _scope("latency")
    reset(ctx.db)
    workers = ctx.workers(scope, 1)
    problems: list[str] = []
    committed: dict[int, float] = {}
    order: list[int] = []
    try:
        workers.start()
        with make_topia(ctx.db.dsn, scope) as topia:
            noop = _noop(topia)
            for k in range(n + warmup):
                job = noop.delay("latency", i=k)
                committed[job.id] = time.time()
                order.append(job.id)
                time.sleep(gap)
            with ctx.db.connect() as conn:
                if not wait_for(conn, IN_LINE, [scope], lambda v: not v, workers, timeout=30):
                    problems.append("timed out before every job was done")
    finally:
        logs = workers.stop()
        warnings = workers.warnings()
        workers.cleanup()
    with ctx.db.connect() as conn:
        notes: list[str] = []
        problems += check_ran(conn, scope, n + warmup, logs, notes=notes)
    started = {i: t0 for log in logs for i, t0 in zip(log.ids, log.t0, strict=True)}
    ended = {i: t1 for log in logs for i, t1 in zip(log.ids, log.t1, strict=True)}
    samples = []
    busy = 0
    for pos, job_id in enumerate(order[warmup:], start=warmup):
        if job_id not in started:
            continue
        prev = order[pos - 1]
        if ended.get(prev, 0.0) > committed[job_id]:
            busy += 1  # the worker was not idle when this job arrived
        samples.append((started[job_id] - committed[job_id]) * 1000)
    samples.sort()
    return {
        "samples": len(samples),
        "p50_ms": round(_pct(samples, 50), 3),
        "p95_ms": round(_pct(samples, 95), 3),
        "p99_ms": round(_pct(samples, 99), 3),
        "max_ms": round(samples[-1], 3) if samples else 0.0,
        "not_idle": busy,
        "warnings": warnings[:5] + notes,
        "problems": problems,
    }


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    k = (len(values) - 1) * pct / 100
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# -- scale ----------------------------------------------------------------------------


def _statement_costs(ctx: Context, scope: str, repeat: int = 15) -> Metrics:
    """Time the worker's poll and claim statements (each in a rolled-back
    transaction) and EXPLAIN ANALYZE LEASE_ACQUIRE."""
    queries = _queries_module()
    if queries is None:
        return {"statements": "the engine has no queuetopia.queries (nor db.queries)"}
    params = {
        "scope": scope,
        "owner": "bench:0:explain",
        "limit": ctx.concurrency,
        "ttl": 30.0,
        "queues": None,
        "skip": [],
        "queue": queue_name(1),
        "lease_id": uuid.uuid4(),
        "node": "bench:0",
        # Engine v2: one step that takes the queue and claims its head.
        "batch": Jsonb([{"in_queue": queue_name(1), "in_acquire": True, "in_claim": True}]),
    }
    names = (
        "LEASE_ACQUIRE", "QUEUE_ANY_DUE", "QUEUE_NEXT_DUE", "JOB_CLAIM_HEAD",  # before v2
        "QUEUE_DUE", "JOB_STEP",  # engine v2
    )  # fmt: skip
    out: Metrics = {}
    with ctx.db.connect(autocommit=False) as conn:
        for name in names:
            statement = getattr(queries, name, None)
            if statement is None:
                out[f"{name}_ms"] = None
                continue
            times = []
            try:
                for _ in range(repeat):
                    t = time.perf_counter()
                    cur = conn.execute(statement, params)
                    if cur.description:
                        cur.fetchall()
                    times.append((time.perf_counter() - t) * 1000)
                    conn.rollback()
            except psycopg.Error as exc:
                conn.rollback()
                out[f"{name}_ms"] = None
                out[f"{name}_error"] = str(exc).splitlines()[0]
                continue
            out[f"{name}_ms"] = round(statistics.median(times), 3)
        statement = getattr(queries, "LEASE_ACQUIRE", None) or getattr(queries, "JOB_STEP", None)
        if statement is not None:
            try:
                rows = conn.execute(
                    "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params
                ).fetchall()
                plan = [r[0] for r in rows]
                out["lease_acquire_plan"] = plan
                for line in plan:
                    m = re.search(r"Execution Time: ([\d.]+) ms", line)
                    if m:
                        out["LEASE_ACQUIRE_explain_ms"] = float(m.group(1))
            except psycopg.Error as exc:
                out["lease_acquire_plan"] = [f"EXPLAIN failed: {exc}"]
            conn.rollback()
    return out


def _queries_module() -> Any:
    """The engine's statements: queuetopia.queries, or queuetopia.db.queries since the
    database layer moved (Engine v2). The names timed may not exist in either: those
    are reported as not timed."""
    import importlib

    for name in ("queuetopia.queries", "queuetopia.db.queries"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def scale(ctx: Context, which: str, processes: int = 2) -> Metrics:
    """Claim rate with many pending jobs loaded by SQL, and the cost of the poll and
    claim statements at that size. `which`: "big" (the scale set) or "small".

    The workers start first, idle, with a poll interval of an hour, so they look only
    when the NOTIFY after loading and measuring wakes them; the claim rate runs from
    the first claim to the last done_at of the window."""
    sizes = ctx.sizes
    queues, per = sizes.scale_big if which == "big" else sizes.scale_small
    n = queues * per
    window = min(sizes.scale_window, n) if which == "big" else n
    return claim_rate(ctx, f"scale-{which}", queues, per, window, processes)


def growth_queues(ctx: Context, queues: int, processes: int = 2) -> Metrics:
    """How the claim rate grows with the number of queues: `queues` queues with one
    pending job each (at least the window's worth of jobs in all), loaded by SQL."""
    window = min(ctx.sizes.scale_window, max(queues, 100))
    per = max(1, -(-window // queues))
    return claim_rate(ctx, f"growth-{queues}", queues, per, window, processes)


def claim_rate(
    ctx: Context, name: str, queues: int, per: int, window: int, processes: int
) -> Metrics:
    """The claim rate over the first `window` jobs of queues x per pending ones."""
    n = queues * per
    scope = _scope(name)
    reset(ctx.db)
    workers = ctx.workers(scope, processes, poll_interval=3600.0)
    problems: list[str] = []
    try:
        workers.start()
        t = time.perf_counter()
        dbmod.bulk_load(ctx.db, scope, queues, per)
        load_seconds = time.perf_counter() - t
        costs = _statement_costs(ctx, scope)
        before = counters(ctx.db)
        meter = CpuMeter(workers.pids, ctx.db.postmaster).start()
        with make_topia(ctx.db.dsn, scope) as topia:
            topia.notify()
        with ctx.db.connect() as conn:
            if not wait_for(
                conn, DONE_COUNT, [scope], lambda v: v >= window, workers, 60 + window / 100, 0.05
            ):
                problems.append("timed out or a worker died before the window was done")
        meter.stop()
    finally:
        logs = workers.stop()
        warnings = workers.warnings()
        workers.cleanup()
    if not workers.stopped_cleanly:
        problems.append("a worker did not stop cleanly on SIGTERM")
    with ctx.db.connect() as conn:
        notes: list[str] = []
        problems += check_ran(conn, scope, n, logs, complete=window == n, notes=notes)
        longest_gap, idle, stalls = queue_gaps(conn, scope, logs)
        row = conn.execute(
            """SELECT count(*), extract(epoch FROM max(done_at) - min(attempted_at))::float8
                 FROM queuetopia_jobs WHERE scope = %s AND state = 'done'""",
            [scope],
        ).fetchone()
    assert row is not None
    ran, elapsed = row
    after = counters(ctx.db)
    return {
        "pending": n,
        "queues": queues,
        "ran": ran,
        "seconds": round(elapsed or 0.0, 3),
        "jobs_per_s": round(ran / elapsed, 1) if elapsed else 0.0,
        "load_seconds": round(load_seconds, 1),
        **costs,
        "max_queue_gap_ms": round(longest_gap * 1000, 1),
        "max_idle_ms": round(idle * 1000, 1),
        "stalls": len(stalls),
        **meter.per_job(ran),
        **stat_delta(before, after, ran),
        "warnings": stalls[:5] + warnings[:5] + notes,
        "problems": problems,
    }


# -- memory ---------------------------------------------------------------------------


def memory(ctx: Context) -> Metrics:
    """Peak RSS (VmHWM) of one worker process draining the memory set: the worker
    starts idle (its RSS then is the baseline), the jobs are bulk-loaded, a NOTIFY
    wakes it. Its run log only counts (no per-job record), so it measures the engine."""
    queues, per = ctx.sizes.memory
    n = queues * per
    scope = _scope("memory")
    reset(ctx.db)
    workers = ctx.workers(scope, 1, record="count", poll_interval=3600.0)
    problems: list[str] = []
    samples: list[int] = []
    peak: dict[str, int] = {}
    try:
        workers.start()
        pid = workers.pids[0]
        idle = proc_status(pid)
        dbmod.bulk_load(ctx.db, scope, queues, per)
        with make_topia(ctx.db.dsn, scope) as topia:
            topia.notify()
        with ctx.db.connect() as conn:
            deadline = time.monotonic() + 120 + n / 100
            while time.monotonic() < deadline and workers.alive():
                status = proc_status(pid)
                if "VmRSS" in status:
                    samples.append(status["VmRSS"])
                row = conn.execute(IN_LINE, [scope]).fetchone()
                if row is not None and not row[0]:
                    break
                time.sleep(0.1)
            else:
                problems.append("timed out or the worker died before every job was done")
            peak = proc_status(pid)
    finally:
        logs = workers.stop()
        warnings = workers.warnings()
        workers.cleanup()
    with ctx.db.connect() as conn:
        counted = sum(log.count for log in logs)
        problems += check_ran(conn, scope, n, None, counted=counted)
        row = conn.execute(
            """SELECT extract(epoch FROM max(done_at) - min(attempted_at))::float8
                 FROM queuetopia_jobs WHERE scope = %s""",
            [scope],
        ).fetchone()
    elapsed = row[0] if row else None
    return {
        "jobs": n,
        "rss_idle_mb": round(idle.get("VmRSS", 0) / 1024, 1),
        "rss_end_mb": round(peak.get("VmRSS", 0) / 1024, 1),
        "peak_rss_mb": round(peak.get("VmHWM", 0) / 1024, 1),
        "jobs_per_s": round(n / elapsed, 1) if elapsed else 0.0,
        "warnings": warnings[:5],
        "problems": problems,
    }


# -- floor (pgbench) -------------------------------------------------------------------

FLOOR_SETUP = """
DROP TABLE IF EXISTS bench_floor_counter, bench_floor_jobs;
CREATE TABLE bench_floor_counter (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
INSERT INTO bench_floor_counter (id) SELECT generate_series(1, 100000);
CREATE TABLE bench_floor_jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue int NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    params jsonb NOT NULL DEFAULT '{}',
    done_at timestamptz
);
CREATE INDEX bench_floor_jobs_pending ON bench_floor_jobs (id) WHERE state = 'pending';
"""

FLOOR_DROP = "DROP TABLE IF EXISTS bench_floor_counter, bench_floor_jobs"

FLOOR_UPDATE = """\\set id random(1, 100000)
UPDATE bench_floor_counter SET n = n + 1 WHERE id = :id;
"""

# A queue's minimum: claim (one commit), then finish (a second commit).
FLOOR_PAIR = """UPDATE bench_floor_jobs SET state = 'running'
 WHERE id = (SELECT id FROM bench_floor_jobs WHERE state = 'pending'
              ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id AS job_id \\gset
UPDATE bench_floor_jobs SET state = 'done', done_at = now() WHERE id = :job_id;
"""


def update_rate(ctx: Context, exe: str, clients: int) -> float:
    """pgbench's one-row UPDATE per commit, `clients` clients, for floor_seconds."""
    with ctx.db.connect() as conn:
        conn.execute(FLOOR_SETUP)
    seconds = str(int(max(ctx.sizes.floor_seconds, 1)))
    args = ["-c", str(clients), "-j", str(min(clients, 2)), "-T", seconds]
    return _run_pgbench(ctx, exe, FLOOR_UPDATE, args)


def _pgbench(ctx: Context) -> str | None:
    if ctx.db.bin_dir and (Path(ctx.db.bin_dir) / "pgbench").exists():
        return str(Path(ctx.db.bin_dir) / "pgbench")
    return shutil.which("pgbench")


def _run_pgbench(ctx: Context, exe: str, script: str, args: list[str]) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
        path = f.name
    env = {**__import__("os").environ, **dbmod.libpq_env(ctx.db)}
    try:
        proc = subprocess.run(
            [exe, "-n", "-M", "prepared", "-f", path, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        Path(path).unlink(missing_ok=True)
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", proc.stdout)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"pgbench failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return float(m.group(1))


def floor(ctx: Context, clients: int) -> Metrics:
    """pgbench on the same server: one-row update per commit, and a claim-then-finish
    pair (two commits) per job."""
    exe = _pgbench(ctx)
    if exe is None:
        return {"problems": [], "skipped": "pgbench not found"}
    sizes = ctx.sizes
    threads = str(min(clients, 2))
    update_tps = update_rate(ctx, exe, clients)
    per_client = max(sizes.floor_pairs // clients, 1)
    total = per_client * clients
    with ctx.db.connect() as conn:
        conn.execute(
            "INSERT INTO bench_floor_jobs (queue) SELECT g %% 100 FROM generate_series(1, %s) g",
            [total],
        )
        conn.execute("VACUUM ANALYZE bench_floor_jobs")
    pair_tps = _run_pgbench(
        ctx, exe, FLOOR_PAIR, ["-c", str(clients), "-j", threads, "-t", str(per_client)]
    )
    problems = []
    with ctx.db.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'done'), count(*) FROM bench_floor_jobs"
        ).fetchone()
        if row is None or row[0] != total or row[1] != total:
            problems.append(f"pgbench pair: expected {total} done rows, got {row}")
        conn.execute(FLOOR_DROP)
    return {
        "clients": clients,
        "update_commits_per_s": round(update_tps, 1),
        "claim_finish_jobs_per_s": round(pair_tps, 1),
        "problems": problems,
    }
