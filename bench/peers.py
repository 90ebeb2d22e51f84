"""Side by side: queuetopia (an `async def` action and a plain one), PgQueuer and
procrastinate on the same server, in the same run, on the same workloads. Optional:
`pip install 'queuetopia[bench]'` (see docs/performance.md).

Each peer runs as its own docs recommend, nothing tuned down or up:
- PgQueuer: its asyncpg driver (what `pgq run` uses), `QueueManager.run(batch_size=10)`
  with its default dequeue timeout; ordered work is one entrypoint per key with
  `concurrency_limit=1`, which PgQueuer enforces in SQL across workers. Jobs that wait
  (the I/O workloads): its performance guide's `max_concurrent_tasks=concurrency`,
  with `batch_size` half of it, the largest it allows. Unordered work: one plain
  entrypoint.
- procrastinate: its psycopg connector, `run_worker(concurrency=10)` with its default
  polling and LISTEN/NOTIFY; ordered work is `lock=` per key.
- queuetopia: `topia.worker(concurrency=10)` with the library defaults (poll 60 s).

The same body for every system (bench/peer_workers.py), the same drain
(bench/peer_drain.py), the same checks: each job exactly once, per key in enqueue
order and never overlapping, from the actions' own records. The arrival order of a
drain's jobs is in its label (bench/arrival.py): "key by key" or "interleaved".

Also the worker program: `python bench/peers.py worker SYSTEM --dsn DSN ...`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench.arrival import ARRIVALS, INTERLEAVED, KEY_BY_KEY
from bench.context import IO_MAX_CONNECTIONS
from bench.peer_drain import Drain, SetShape
from bench.peer_enqueue import enqueue_concurrent, enqueue_fanout, enqueue_single
from bench.peer_workers import PEERS, SYSTEMS, worker_main

QUEUETOPIA = ("queuetopia_async", "queuetopia_plain")
Measure = Callable[[str, Any], dict[str, Any]]  # (system, ctx) -> metrics


@dataclass(frozen=True)
class Workload:
    name: str
    label: str
    processes: int
    measure: Measure
    # what queuetopia must reach: (its metric, ">=", value), e.g. x_best_peer >= 2
    target: tuple[str, float] | None = None
    systems: tuple[str, ...] = SYSTEMS


def drain(shape: SetShape, processes: int, io: Any = None) -> Measure:
    """A drain of `shape`; `io`: an IoShape (jobs wait, at its concurrency, on the
    server at max_connections=100)."""

    def measure(system: str, ctx: Any) -> dict[str, Any]:
        try:
            db = ctx.db if io is None else ctx.server_at(IO_MAX_CONNECTIONS)
        except RuntimeError as exc:  # $QUEUETOPIA_BENCH_DSN at another limit
            return {"skipped": str(exc), "problems": []}
        run = Drain(system, db.dsn, shape, processes, ctx.concurrency, db.postmaster)
        if io is not None:
            run.concurrency, run.sleep, run.time_limit = io.concurrency, io.delay, io.time_limit
        metrics = run.run()
        if io is not None and "jobs_per_s" in metrics:
            metrics["pct_of_ceiling"] = round(100 * metrics["jobs_per_s"] / io.ceiling, 1)
        return metrics

    return measure


def workloads(sizes: Any) -> list[Workload]:
    return [*_enqueue(sizes), *_drains(sizes), *_io(sizes)]


def _enqueue(sizes: Any) -> list[Workload]:
    single = sizes.enqueue_single
    n, producers = sizes.producers
    fanout_calls = max(sizes.enqueue_batches // 2, 2)
    return [
        Workload(
            "enqueue_single",
            f"enqueue, one job per transaction, 1 producer ({single:,} jobs)",
            0,
            lambda s, ctx: enqueue_single(s, ctx.db.dsn, single),
            ("x_best_peer", 1.0),
        ),
        Workload(
            "enqueue_concurrent",
            f"enqueue, one job per transaction, {producers} producer processes ({n:,} jobs)",
            0,
            lambda s, ctx: enqueue_concurrent(s, ctx.db.dsn, n, producers),
            ("x_best_peer", 1.5),
        ),
        Workload(
            "enqueue_fanout",
            f"enqueue_many: 1,000 jobs for 1,000 queues in one call (x {fanout_calls}); "
            "PgQueuer one `enqueue` of 1,000, procrastinate `batch_defer_jobs_async`",
            0,
            lambda s, ctx: enqueue_fanout(s, ctx.db.dsn, 1000, fanout_calls),
            ("x_best_peer", 1.0),
        ),
    ]


def _drains(sizes: Any) -> list[Workload]:
    oq, oper = sizes.ordered
    mq, mper = sizes.many_queues
    out = [
        Workload(
            "ordered",
            f"ordered {oq:,} x {oper:,}, {arrival}",
            p,
            drain(SetShape(oq, oper, arrival), p),
            ("x_best_peer", 2.0) if p == 2 else None,
        )
        for p in (1, 2)
        for arrival in ARRIVALS
    ]
    out += [
        Workload(
            "many_queues",
            f"{mq * mper:,} jobs on {mq:,} queues, {KEY_BY_KEY}",
            p,
            drain(SetShape(mq, mper), p),
            ("x_best_peer", 1.5) if p == 2 else None,
        )
        for p in (1, 2)
    ]
    one = sizes.one_queue
    return [
        *out,
        Workload(
            "unordered",
            f"{mq * mper:,} jobs on {mq:,} queues, {INTERLEAVED}; "
            "PgQueuer without ordering (one plain entrypoint), queuetopia ordered",
            2,
            drain(SetShape(mq, mper, INTERLEAVED, unordered=True), 2),
            ("x_best_peer", 1.0),
            (*QUEUETOPIA, "pgqueuer"),
        ),
        Workload("one_queue", f"one queue 1 x {one:,}", 1, drain(SetShape(1, one), 1)),
    ]


def _io(sizes: Any) -> list[Workload]:
    out = []
    for name in ("io_50ms", "io_500ms"):
        io = getattr(sizes, name)
        shape = SetShape(io.queues, io.jobs // io.queues, INTERLEAVED)
        out.append(
            Workload(
                name,
                f"{io.jobs:,} jobs on {io.queues:,} queues waiting {io.delay * 1000:g} ms, "
                f"{io.processes} procs x concurrency {io.concurrency:,}, "
                "max_connections=100",
                io.processes,
                drain(shape, io.processes, io),
                ("pct_of_ceiling", 80.0),
            )
        )
    return out


def side_by_side(ctx: Any, workload: Workload) -> dict[str, Any]:
    """One run of `workload` for every system in turn; metrics keyed `system.metric`,
    with queuetopia's ratios to the best peer computed within the run."""
    out: dict[str, Any] = {"problems": [], "warnings": []}
    for system in workload.systems:
        metrics = workload.measure(system, ctx)
        out["problems"] += [f"{system}: {p}" for p in metrics.pop("problems", [])]
        out["warnings"] += [f"{system}: {p}" for p in metrics.pop("warnings", [])]
        for key, value in metrics.items():
            out[f"{system}.{key}"] = value
    best = max((out.get(f"{p}.jobs_per_s") or 0.0) for p in PEERS)
    for system in QUEUETOPIA:
        rate = out.get(f"{system}.jobs_per_s") or 0.0
        out[f"{system}.x_best_peer"] = round(rate / best, 2) if best else None
    if workload.name == "one_queue":
        out.update(_against_floor(ctx, out))
    return out


def _against_floor(ctx: Any, out: dict[str, Any]) -> dict[str, Any]:
    """pgbench's one-client one-row update per commit, right after, same server."""
    from bench import workloads as w

    floor = w.floor(ctx, clients=1)
    commits = floor.get("update_commits_per_s") or 0.0
    ratios: dict[str, Any] = {"floor.update_commits_per_s": floor.get("update_commits_per_s")}
    for system in QUEUETOPIA:
        rate = out.get(f"{system}.jobs_per_s") or 0.0
        ratios[f"{system}.x_floor"] = round(rate / commits, 2) if commits else None
    return ratios


def targets(workload: Workload) -> tuple[tuple[str, str, float], ...]:
    if workload.target is None:
        return ()
    metric, value = workload.target
    return tuple((f"{s}.{metric}", ">=", value) for s in QUEUETOPIA)


def cases(sizes: Any) -> list[tuple[Workload, Callable[[Any], dict[str, Any]]]]:
    return [(wl, partial(side_by_side, workload=wl)) for wl in workloads(sizes)]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_main(sys.argv[2:])
    else:
        print(__doc__)
