"""The cases `bench/run.py` runs: each workload at the mode's sizes, with its label, the
report table it goes to and its targets (from the performance issues)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench import connections, iobound, producers, snapshot
from bench import workloads as w
from bench.arrival import ARRIVALS, KEY_BY_KEY
from bench.context import Context, Sizes

Metrics = dict[str, Any]


@dataclass(frozen=True)
class Case:
    name: str  # workload name, what --only matches
    label: str
    fn: Callable[[Context], Metrics]
    table: str
    processes: int | None = None
    # (metric, ">=" or "<=", value) targets from the performance issue
    targets: tuple[tuple[str, str, float], ...] = ()
    max_runs: int | None = None  # a long case, run once unless --runs says otherwise


def cases(sizes: Sizes, peers: bool) -> list[Case]:
    out = [
        *_floor(sizes),
        *_enqueue(sizes),
        *_drains(sizes),
        *_logging(sizes),
        *_one_queue_and_latency(sizes),
        *_scale_and_growth(sizes),
        *_memory(sizes),
        *_io(sizes),
        *_connections(sizes),
        *_snapshot(sizes),
    ]
    if peers:
        from bench import peers as peermod

        out += [
            Case(f"peers_{wl.name}", wl.label, fn, "peers", wl.processes or None,
                 peermod.targets(wl))
            for wl, fn in peermod.cases(sizes)
        ]  # fmt: skip
    return out


def _floor(sizes: Sizes) -> list[Case]:
    return [
        Case("floor", f"pgbench, {c} client(s)", partial(w.floor, clients=c), "floor")
        for c in sizes.floor_clients
    ]


def _enqueue(sizes: Sizes) -> list[Case]:
    n, procs = sizes.producers
    return [
        Case(
            "enqueue_single",
            f"enqueue: .delay, 1 job per transaction ({sizes.enqueue_single:,} jobs)",
            w.enqueue_single,
            "throughput",
            targets=(("jobs_per_s", ">=", 2500),),
        ),
        Case(
            "enqueue_concurrent",
            f"enqueue: .delay, 1 job per transaction, {procs} producer processes ({n:,} jobs)",
            producers.enqueue_concurrent,
            "throughput",
        ),
        Case(
            "enqueue_batch",
            f"enqueue: delay_many x 1,000 ({sizes.enqueue_batches * 1000:,} jobs)",
            w.enqueue_batch,
            "throughput",
            targets=(("jobs_per_s", ">=", 30000),),
        ),
    ]


def _drains(sizes: Sizes) -> list[Case]:
    mq, mper = sizes.many_queues
    oq, oper = sizes.ordered
    out = [
        Case(
            "many_queues",
            f"many queues: {mq:,} x {mper}, {KEY_BY_KEY}",
            partial(w.many_queues, processes=p),
            "throughput",
            p,
            (("jobs_per_s", ">=", 5000),) if p == 2 else (),
        )
        for p in (1, 2)
    ]
    out += [
        Case(
            "ordered",
            f"ordered: {oq:,} x {oper}, {arrival}",
            partial(w.ordered, processes=p, arrival=arrival),
            "throughput",
            p,
            (("jobs_per_s", ">=", 6000),) if p == 2 else (),
        )
        for p in (1, 2)
        for arrival in ARRIVALS
    ]
    return out


def _logging(sizes: Sizes) -> list[Case]:
    lq, lper = sizes.logging
    how = {"off": "off", "cli": "as `queuetopia worker`", "json": "--log-format json"}
    return [
        Case(
            "logging",
            f"ordered: {lq:,} x {lper}, worker logging {how[mode]}",
            partial(w.logging_cost, log_mode=mode),
            "throughput",
            2,
        )
        for mode in ("off", "cli", "json")
    ]


def _one_queue_and_latency(sizes: Sizes) -> list[Case]:
    return [
        Case(
            "one_queue",
            f"one queue: 1 x {sizes.one_queue:,}",
            w.one_queue,
            "throughput",
            1,
            (("jobs_per_s", ">=", 2000), ("x_floor", ">=", 0.5)),
        ),
        Case(
            "latency",
            f"latency: idle worker, {sizes.latency_samples} jobs one at a time",
            w.latency,
            "latency",
            1,
            (("p50_ms", "<=", 2.0), ("p99_ms", "<=", 5.0)),
        ),
    ]


def _scale_and_growth(sizes: Sizes) -> list[Case]:
    bq, bper = sizes.scale_big
    sq, sper = sizes.scale_small
    oq, oper = sizes.ordered
    out = [
        Case(
            "scale",
            f"scale: {sq * sper:,} pending ({sq:,} queues)",
            partial(w.scale, which="small"),
            "scale",
            2,
        ),
        Case(
            "scale",
            f"scale: {bq * bper:,} pending ({bq:,} queues), first {sizes.scale_window:,}",
            partial(w.scale, which="big"),
            "scale",
            2,
        ),
    ]
    out += [
        Case(
            "growth",
            f"growth: ordered {oq:,} x {oper}, {KEY_BY_KEY}, {p} worker procs",
            partial(w.ordered, processes=p),
            "growth",
            p,
        )
        for p in sizes.growth_processes
    ]
    out += [
        Case(
            "growth",
            f"growth: claim rate with {q:,} queues",
            partial(w.growth_queues, queues=q),
            "growth",
            2,
            max_runs=1,
        )
        for q in sizes.growth_queues
    ]
    return out


def _memory(sizes: Sizes) -> list[Case]:
    mq, mper = sizes.memory
    return [
        Case(
            "memory",
            f"memory: 1 worker draining {mq * mper:,} jobs ({mq:,} queues)",
            w.memory,
            "memory",
            1,
            (("peak_rss_mb", "<=", 80),),
            max_runs=1,
        )
    ]


def _io(sizes: Sizes) -> list[Case]:
    out = []
    for which in ("io_50ms", "io_500ms"):
        shape = getattr(sizes, which)
        for flavour in ("async", "plain"):
            action = "`async def`" if flavour == "async" else "plain"
            out.append(
                Case(
                    which,
                    f"{shape.jobs:,} jobs on {shape.queues:,} queues waiting "
                    f"{shape.delay * 1000:g} ms, {action}, {shape.processes} procs x "
                    f"concurrency {shape.concurrency:,}",
                    partial(iobound.io_drain, which=which, flavour=flavour),
                    "io",
                    shape.processes,
                    (("pct_of_ceiling", ">=", 80),),
                )
            )
    return out


def _connections(sizes: Sizes) -> list[Case]:
    return [
        Case(
            "connections",
            f"1 worker at concurrency {c:,}",
            partial(connections.per_worker, concurrency=c),
            "connections",
            1,
            (("draining_max", "<=", 6), ("idle_max", "<=", 6)),
        )
        for c in sizes.connections
    ]


def _snapshot(sizes: Sizes) -> list[Case]:
    shape = sizes.snapshot
    load = (
        f"{shape.rate:,} jobs/s over {shape.queues:,} queues + one queue at "
        f"{shape.hot_rate:,} jobs/s for {shape.seconds:g} s"
    )
    return [
        Case(
            "snapshot",
            f"{load}, {'a REPEATABLE READ snapshot held' if held else 'no snapshot (baseline)'}",
            partial(snapshot.steady_load, held=held),
            "snapshot",
            2,
            (("max_backlog_s", "<=", 1.0), ("last_over_first", ">=", 0.8)),
            max_runs=1,
        )
        for held in (True, False)
    ]
