"""I/O-bound drains (`io_50ms`, `io_500ms`): jobs that wait on the network, many of
them in flight, on a server at PostgreSQL's default `max_connections=100`.

The jobs (an `async def` action awaiting `asyncio.sleep(d)`, or a plain one calling
`time.sleep(d)`) are enqueued interleaved across their queues in one transaction while
the workers idle; the rate runs from that commit to the last `done_at`. The ceiling is
what the slots allow: processes x concurrency / d jobs/s. An engine that cannot run the
set (a connection per slot is more than the server allows) gets `time_limit` seconds;
its result then says why it failed (rejected connections, a worker that died, jobs not
done in time) and the rate is of what it ran. Every wait is bounded."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .apps import make_topia
from .arrival import INTERLEAVED, enqueue_arrival
from .context import IO_MAX_CONNECTIONS, Context, IoShape
from .db import BenchDatabase, queue_name, reset, server_log_since, server_log_size
from .procs import CpuMeter, Workers
from .verify import check_ran
from .workloads import IN_LINE, wait_for

Metrics = dict[str, Any]
TOO_MANY = "too many clients"
ACTIONS = {"async": "sleep_async", "plain": "sleep_plain"}


@dataclass
class IoRun:
    """What happened in one run, for the metrics."""

    finished: bool = False
    committed_at: Any = None
    waited: float = 0.0
    meter: CpuMeter | None = None
    failures: list[str] = field(default_factory=list)
    told: int = 0  # worker log lines saying "too many clients"
    rejected: int = 0  # connections the server rejected so (its log, when embedded)
    killed: bool = False
    warnings: list[str] = field(default_factory=list)


def io_drain(ctx: Context, which: str, flavour: str) -> Metrics:
    """`which`: "io_50ms" or "io_500ms" (its shape in the sizes); `flavour`: "async"
    or "plain" action."""
    shape: IoShape = getattr(ctx.sizes, which)
    try:
        db = ctx.server_at(IO_MAX_CONNECTIONS)
    except RuntimeError as exc:
        return {"skipped": str(exc), "problems": []}
    scope = f"{which}-{uuid.uuid4().hex[:8]}"
    reset(db)
    log_offset = server_log_size(db)
    workers = ctx.workers(scope, shape.processes, concurrency=shape.concurrency, db=db)
    run = IoRun()
    try:
        _start(workers, run, min(shape.time_limit, 60.0))
        if not run.failures:
            _enqueue_and_wait(db, scope, shape, ACTIONS[flavour], workers, run)
    finally:
        logs = workers.stop(timeout=45.0)
        run.told = workers.count_in_output(TOO_MANY)
        run.killed = not workers.stopped_cleanly
        run.warnings = workers.warnings()
        workers.cleanup()
    run.rejected = server_log_since(db, log_offset).lower().count(TOO_MANY)
    return _metrics(ctx, db, scope, shape, run, logs)


def _start(workers: Workers, run: IoRun, timeout: float) -> None:
    try:
        workers.start(timeout=timeout)
    except RuntimeError as exc:
        run.failures.append(f"the workers did not start: {str(exc)[:300]}")


def _enqueue_and_wait(
    db: BenchDatabase, scope: str, shape: IoShape, action: str, workers: Workers, run: IoRun
) -> None:
    per_queue = shape.jobs // shape.queues
    with make_topia(db.dsn, scope) as topia, db.connect(autocommit=False) as conn:
        params = {"d": shape.delay}
        enqueue_arrival(
            topia,
            conn,
            action,
            (shape.queues, per_queue, INTERLEAVED),
            queue_name,
            lambda _q, i: {**params, "i": i},
        )
        run.meter = CpuMeter(workers.pids, db.postmaster).start()
        conn.commit()
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        conn.commit()
        run.committed_at = row[0] if row else None
        conn.autocommit = True
        started = time.monotonic()
        run.finished = wait_for(conn, IN_LINE, [scope], lambda v: not v, workers, shape.time_limit)
        run.waited = time.monotonic() - started
        run.meter.stop()
    if not run.finished:
        run.failures += workers.died() or [f"not every job done within {shape.time_limit:.0f}s"]


def _metrics(
    ctx: Context, db: BenchDatabase, scope: str, shape: IoShape, run: IoRun, logs: Any
) -> Metrics:
    if run.killed:
        run.failures.append("a worker did not stop within 45 s of SIGTERM and was killed")
    # Refused connections: the rules allow a job to run again after its attempt was
    # given up; that is part of this failure, not a wrong answer.
    lost: list[str] | None = [] if run.told or run.rejected else None
    notes: list[str] = []
    with db.connect() as conn:
        problems = check_ran(
            conn,
            scope,
            shape.jobs,
            logs,
            complete=run.finished,
            killed=run.killed,
            lost=lost,
            notes=notes,
        )
        row = conn.execute(
            """SELECT count(*) FILTER (WHERE state = 'done'),
                      extract(epoch FROM max(done_at) - %(t)s)::float8
                 FROM queuetopia_jobs WHERE scope = %(s)s""",
            {"t": run.committed_at, "s": scope},
        ).fetchone()
    done, last = row if row else (0, None)
    seconds = (last or 0.0) if run.finished else run.waited
    rate = done / seconds if seconds else 0.0
    if run.told or run.rejected:
        run.failures.append(
            f"'{TOO_MANY}': {run.told} worker log line(s), "
            f"{run.rejected} rejection(s) in the server log"
        )
    run.failures += [f"after the refusals: {r}" for r in lost or []]
    if not ctx.timing and not run.finished:
        problems += run.failures  # smoke sizes fit any engine: not finishing is a failure
    meter = run.meter.per_job(done) if run.meter else {}
    return {
        "jobs": shape.jobs,
        "done": done,
        "seconds": round(seconds, 3),
        "jobs_per_s": round(rate, 1),
        "ceiling_jobs_per_s": round(shape.ceiling, 1),
        "pct_of_ceiling": round(100 * rate / shape.ceiling, 1),
        "finished": run.finished,
        "too_many_clients_logged": run.told,
        "too_many_clients_rejected": run.rejected,
        "max_connections": IO_MAX_CONNECTIONS,
        "failure": "; ".join(run.failures) or None,
        **meter,
        "warnings": run.warnings[:5] + notes,
        "problems": problems,
    }
