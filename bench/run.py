"""Queuetopia benchmark suite: one command, markdown tables on stdout, JSON on request.

    python bench/run.py                 # full sizes, 3 runs each, medians
    python bench/run.py --quick         # smaller scale/memory sets, 1 run
    python bench/run.py --smoke         # seconds; correctness only (for CI)
    python bench/run.py --only ordered --only latency --runs 5 --json out.json
    python bench/run.py --peers         # also procrastinate and PgQueuer (bench extra)

Starts its own embedded PostgreSQL (pgserver) unless $QUEUETOPIA_BENCH_DSN is set;
either way it works in a database of its own, created and dropped here, with
synchronous_commit=on. Every workload verifies its result (all jobs done, each
exactly once, per-queue order kept, no overlap within a queue); a correctness
failure makes the exit status 1. See docs/performance.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

# Appended, not prepended: an engine on $PYTHONPATH (say an exported commit) wins over
# the checkout this file lives in, for this process and the worker processes alike.
sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench import workloads as w
from bench.db import open_database, settings

Metrics = dict[str, Any]


@dataclass(frozen=True)
class Case:
    name: str  # workload name, what --only matches
    label: str
    fn: Callable[[w.Context], Metrics]
    table: str
    processes: int | None = None
    # (metric, ">=" or "<=", value) targets from the performance issue
    targets: tuple[tuple[str, str, float], ...] = ()
    max_runs: int | None = None  # a long case whose result varies little


def cases(sizes: w.Sizes, peers: bool) -> list[Case]:
    mq, mper = sizes.many_queues
    oq, oper = sizes.ordered
    out: list[Case] = []
    for clients in sizes.floor_clients:
        out.append(
            Case(
                "floor",
                f"pgbench, {clients} client(s)",
                partial(w.floor, clients=clients),
                "floor",
            )
        )
    out += [
        Case(
            "enqueue_single",
            f"enqueue: .delay, 1 job per transaction ({sizes.enqueue_single:,} jobs)",
            w.enqueue_single,
            "throughput",
            targets=(("jobs_per_s", ">=", 2500),),
        ),
        Case(
            "enqueue_batch",
            f"enqueue: delay_many x 1,000 ({sizes.enqueue_batches * 1000:,} jobs)",
            w.enqueue_batch,
            "throughput",
            targets=(("jobs_per_s", ">=", 30000),),
        ),
    ]
    for processes in (1, 2):
        out.append(
            Case(
                "many_queues",
                f"many queues: {mq:,} x {mper}",
                partial(w.many_queues, processes=processes),
                "throughput",
                processes,
                (("jobs_per_s", ">=", 5000),) if processes == 2 else (),
            )
        )
    for processes in (1, 2):
        out.append(
            Case(
                "ordered",
                f"ordered: {oq:,} x {oper}",
                partial(w.ordered, processes=processes),
                "throughput",
                processes,
                (("jobs_per_s", ">=", 6000),) if processes == 2 else (),
            )
        )
    lq, lper = sizes.logging
    for mode in ("off", "cli", "json"):
        out.append(
            Case(
                "logging",
                f"ordered: {lq:,} x {lper}, worker logging "
                + {"off": "off", "cli": "as `queuetopia worker`", "json": "--log-format json"}[
                    mode
                ],
                partial(w.logging_cost, log_mode=mode),
                "throughput",
                2,
            )
        )
    out.append(
        Case(
            "one_queue",
            f"one queue: 1 x {sizes.one_queue:,}",
            w.one_queue,
            "throughput",
            1,
            (("jobs_per_s", ">=", 2000),),
        )
    )
    out.append(
        Case(
            "latency",
            f"latency: idle worker, {sizes.latency_samples} jobs one at a time",
            w.latency,
            "latency",
            1,
            (("p50_ms", "<=", 2.0), ("p99_ms", "<=", 5.0)),
        )
    )
    bq, bper = sizes.scale_big
    sq, sper = sizes.scale_small
    out.append(
        Case(
            "scale",
            f"scale: {sq * sper:,} pending ({sq:,} queues)",
            partial(w.scale, which="small"),
            "scale",
            2,
        )
    )
    out.append(
        Case(
            "scale",
            f"scale: {bq * bper:,} pending ({bq:,} queues), first {sizes.scale_window:,}",
            partial(w.scale, which="big"),
            "scale",
            2,
        )
    )
    for processes in sizes.growth_processes:
        out.append(
            Case(
                "growth",
                f"growth: ordered {oq:,} x {oper}, {processes} worker procs",
                partial(w.ordered, processes=processes),
                "growth",
                processes,
            )
        )
    for queues in sizes.growth_queues:
        out.append(
            Case(
                "growth",
                f"growth: claim rate with {queues:,} queues",
                partial(w.growth_queues, queues=queues),
                "growth",
                2,
                max_runs=1,
            )
        )
    mq2, mper2 = sizes.memory
    out.append(
        Case(
            "memory",
            f"memory: 1 worker draining {mq2 * mper2:,} jobs ({mq2:,} queues)",
            w.memory,
            "memory",
            1,
            (("peak_rss_mb", "<=", 80),),
            max_runs=1,
        )
    )
    if peers:
        from bench import peers as peermod

        out += [
            Case(f"peers_{wl.name}", wl.label, fn, "peers", wl.processes or None)
            for wl, fn in peermod.cases(sizes)
        ]
    return out


# -- running ------------------------------------------------------------------------


def median_metrics(runs: list[Metrics]) -> Metrics:
    out: Metrics = {}
    for key in runs[0]:
        values = [r.get(key) for r in runs]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == len(values):
            out[key] = round(statistics.median(numbers), 3)
        else:
            out[key] = values[len(values) // 2]
    return out


def meets(value: Any, op: str, target: float) -> bool | None:
    if not isinstance(value, int | float):
        return None
    return value >= target if op == ">=" else value <= target


def run_case(case: Case, ctx: w.Context, runs: int) -> dict[str, Any]:
    results: list[Metrics] = []
    problems: list[str] = []
    warnings: list[str] = []
    load = round(os.getloadavg()[0], 2)
    for i in range(runs):
        started = time.perf_counter()
        try:
            metrics = case.fn(ctx)
        except Exception as exc:
            metrics = {"problems": [f"crashed: {type(exc).__name__}: {exc}"]}
            traceback.print_exc(file=sys.stderr)
        took = time.perf_counter() - started
        run_problems = metrics.pop("problems", [])
        warnings += [f"run {i + 1}: {x}" for x in metrics.pop("warnings", [])]
        problems += [f"run {i + 1}: {p}" for p in run_problems]
        results.append(metrics)
        summary = ", ".join(
            f"{k}={v}"
            for k, v in metrics.items()
            if isinstance(v, int | float) and "_per_job" not in k
        )
        status = "OK" if not run_problems else "FAILED: " + "; ".join(run_problems)
        ctx.log(f"  [{case.name} run {i + 1}/{runs} {took:.1f}s] {summary} -> {status}")
    good = [r for r in results if r and "skipped" not in r] or results
    median = median_metrics(good) if good and good[0] else {}
    verdicts = {
        f"{metric} {op} {target:g}": meets(median.get(metric), op, target)
        for metric, op, target in case.targets
    }
    return {
        "name": case.name,
        "label": case.label,
        "table": case.table,
        "processes": case.processes,
        "runs": results,
        "median": median,
        "targets": verdicts,
        "ok": not problems,
        "problems": problems,
        "warnings": warnings,
        "load": load,
    }


# -- environment -----------------------------------------------------------------------


def _sh(cmd: str) -> str:
    try:
        return subprocess.run(
            cmd, shell=True, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except Exception:
        return ""


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = _sh("free -h | awk '/^Mem:/ {print $2}'")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_before": os.getloadavg(),
    }


def git_rev() -> str:
    """Which engine runs: its directory, and its commit when it is a git checkout."""
    import queuetopia

    root = Path(queuetopia.__file__).resolve().parent.parent
    rev = _sh(f"git -C {shlex.quote(str(root))} rev-parse --short HEAD 2>/dev/null")
    if not rev:
        # an exported tree (git archive) may carry its commit in a .rev file
        marker = root / ".rev"
        return f"{root} at {marker.read_text().strip()}" if marker.exists() else f"{root}"
    dirty = _sh(f"git -C {shlex.quote(str(root))} status --porcelain -- queuetopia")
    return f"{root} at {rev}" + (" (queuetopia/ modified)" if dirty else "")


# -- report --------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _verdict(result: dict[str, Any], timing: bool) -> str:
    if not result["ok"]:
        return "**WRONG**"
    if not timing:
        return "ok"
    marks = []
    for name, ok in result["targets"].items():
        if ok is None:
            continue
        marks.append(("meets " if ok else "misses ") + name)
    return "; ".join(marks) if marks else "ok"


def report(doc: dict[str, Any]) -> str:
    timing = doc["mode"] != "smoke"
    results = doc["results"]
    lines = [
        "# Queuetopia benchmark",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"- mode {doc['mode']}, {doc['runs']} run(s) per case (medians), worker concurrency "
        f"{doc['concurrency']}, worker logging `{doc['worker_log']}`, engine {doc['git']}",
        f"- machine: {doc['machine']['nproc']} CPUs ({doc['machine']['cpu']}), "
        f"{doc['machine']['memory']} RAM, Python {doc['machine']['python']}; "
        f"load average before {tuple(round(x, 2) for x in doc['machine']['load_before'])}, "
        f"after {tuple(round(x, 2) for x in doc.get('load_after', ()))}",
        f"- PostgreSQL {doc['postgres'].get('server_version')} ({doc['database']}): "
        + ", ".join(
            f"{k}={v}" for k, v in doc["postgres"].items() if k not in ("version", "server_version")
        ),
        "",
    ]

    def table(name: str, header: list[str], row: Callable[[dict[str, Any]], list[Any]]) -> None:
        chosen = [r for r in results if r["table"] == name]
        if not chosen:
            return
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for r in chosen:
            lines.append("| " + " | ".join(_fmt(v) for v in row(r)) + " |")
        lines.append("")

    def runs_of(r: dict[str, Any], key: str) -> str:
        return " / ".join(_fmt(m.get(key)) for m in r["runs"])

    lines.append("## Throughput (no-op jobs)")
    lines.append("")
    table(
        "throughput",
        ["workload", "worker procs", "jobs/s (median)", "runs", "worker CPU µs/job",
         "PG CPU µs/job", "commits/job", "WAL B/job", "stalls", "load avg", "result"],
        lambda r: [
            r["label"],
            r["processes"] or "-",
            r["median"].get("jobs_per_s"),
            runs_of(r, "jobs_per_s"),
            r["median"].get("worker_cpu_us_per_job"),
            r["median"].get("pg_cpu_us_per_job"),
            r["median"].get("commits_per_job"),
            r["median"].get("wal_bytes_per_job"),
            sum(m.get("stalls", 0) for m in r["runs"]) if r["processes"] else None,
            r.get("load"),
            _verdict(r, timing),
        ],
    )  # fmt: skip
    lines.append("## Latency (enqueue commit -> action start)")
    lines.append("")
    table(
        "latency",
        ["workload", "samples", "p50 ms", "p95 ms", "p99 ms", "max ms", "result"],
        lambda r: [
            r["label"],
            r["median"].get("samples"),
            r["median"].get("p50_ms"),
            r["median"].get("p95_ms"),
            r["median"].get("p99_ms"),
            r["median"].get("max_ms"),
            _verdict(r, timing),
        ],
    )
    lines.append("## Scale (2 worker processes; statements timed in rolled-back transactions)")
    lines.append("")
    table(
        "scale",
        ["set", "claim rate jobs/s", "LEASE_ACQUIRE ms", "(EXPLAIN ms)", "JOB_CLAIM_HEAD ms",
         "QUEUE_ANY_DUE ms", "QUEUE_NEXT_DUE ms", "worker CPU µs/job", "PG CPU µs/job",
         "load s", "result"],
        lambda r: [
            r["label"],
            r["median"].get("jobs_per_s"),
            r["median"].get("LEASE_ACQUIRE_ms"),
            r["median"].get("LEASE_ACQUIRE_explain_ms"),
            r["median"].get("JOB_CLAIM_HEAD_ms"),
            r["median"].get("QUEUE_ANY_DUE_ms"),
            r["median"].get("QUEUE_NEXT_DUE_ms"),
            r["median"].get("worker_cpu_us_per_job"),
            r["median"].get("pg_cpu_us_per_job"),
            r["median"].get("load_seconds"),
            _verdict(r, timing),
        ],
    )  # fmt: skip
    scale = [r for r in results if r["table"] == "scale" and r["ok"]]
    if len(scale) == 2 and timing:
        small, big = (r["median"].get("jobs_per_s") or 0 for r in scale)
        ratio = big / small if small else 0.0
        doc["scale_ratio"] = round(ratio, 3)
        verdict = "meets" if ratio >= 0.8 else "misses"
        lines.append(f"Claim rate at scale / small: **{ratio:.0%}** ({verdict} target >= 80%)")
        lines.append("")
    lines.append("## Growth (worker processes; queues)")
    lines.append("")
    table(
        "growth",
        ["workload", "worker procs", "jobs/s (median)", "runs", "worker CPU µs/job",
         "PG CPU µs/job", "result"],
        lambda r: [
            r["label"],
            r["processes"],
            r["median"].get("jobs_per_s"),
            runs_of(r, "jobs_per_s"),
            r["median"].get("worker_cpu_us_per_job"),
            r["median"].get("pg_cpu_us_per_job"),
            _verdict(r, timing),
        ],
    )  # fmt: skip
    lines.append("## Memory")
    lines.append("")
    table(
        "memory",
        ["workload", "RSS idle MB", "peak RSS (VmHWM) MB", "RSS at end MB", "jobs/s",
         "result"],
        lambda r: [
            r["label"],
            r["median"].get("rss_idle_mb"),
            r["median"].get("peak_rss_mb"),
            r["median"].get("rss_end_mb"),
            r["median"].get("jobs_per_s"),
            _verdict(r, timing),
        ],
    )  # fmt: skip
    lines.append("## Floor: what PostgreSQL itself does on this server (pgbench, -M prepared)")
    lines.append("")
    table(
        "floor",
        ["pgbench", "1-row UPDATE commits/s", "claim+finish jobs/s (2 commits/job)", "result"],
        lambda r: [
            r["label"],
            r["median"].get("update_commits_per_s"),
            r["median"].get("claim_finish_jobs_per_s"),
            _verdict(r, timing) if "skipped" not in r["median"] else r["median"]["skipped"],
        ],
    )
    floors = [
        r["median"].get("claim_finish_jobs_per_s")
        for r in results
        if r["table"] == "floor" and r["median"].get("clients") == 2
    ]
    if floors and floors[0] and timing:
        best = floors[0]
        lines.append(
            f"Queuetopia as a fraction of the 2-client claim+finish floor ({best:,.0f}/s):"
        )
        lines.append("")
        for r in results:
            if r["table"] == "throughput" and r["processes"] and r["median"].get("jobs_per_s"):
                frac = r["median"]["jobs_per_s"] / best
                lines.append(f"- {r['label']}, {r['processes']} proc: {frac:.0%}")
        lines.append("")
    if any(r["table"] == "peers" for r in results):
        lines.extend(peer_tables([r for r in results if r["table"] == "peers"], timing))
    failures = [p for r in results for p in r["problems"]]
    lines.append("## Correctness")
    lines.append("")
    if failures:
        lines.append(f"**{len(failures)} correctness failure(s):**")
        lines.extend(f"- {p}" for p in failures)
    else:
        lines.append(
            "Every run verified: all jobs done exactly once (database attempts and the "
            "workers' own records), per-queue order kept, no overlap within a queue."
        )
    lines.append("")
    notes = [f"{r['label']}: {x}" for r in results for x in r.get("warnings", [])]
    if notes:
        lines.append("Warnings the workers logged (not correctness failures):")
        lines.append("")
        lines.extend(f"- {x}" for x in notes[:20])
        lines.append("")
    return "\n".join(lines)


SYSTEM_NAMES = {
    "queuetopia_async": "queuetopia `async def`",
    "queuetopia_plain": "queuetopia plain",
    "pgqueuer": "PgQueuer",
    "procrastinate": "procrastinate",
}
PEER_TARGETS = {  # workload name, processes -> multiple of the best peer's jobs/s
    ("peers_enqueue_single", None): 2.0,
    ("peers_enqueue_fanout", None): 1.5,
    ("peers_ordered", 2): 2.0,
    ("peers_many_queues", 2): 1.5,
}


def peer_tables(results: list[dict[str, Any]], timing: bool) -> list[str]:
    """Side by side: jobs/s per system (medians), queuetopia's ratio to the best peer
    (the median of the ratios of each run), and CPU per job."""
    lines = ["## Side by side with the peers (same server, same run, same body)", ""]
    names = list(SYSTEM_NAMES)
    head = ["workload", "procs", *(SYSTEM_NAMES[n] + " jobs/s" for n in names)]
    head += ["async / best peer", "plain / best peer", "target", "result"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        m = r["median"]
        target = PEER_TARGETS.get((r["name"], r["processes"]))
        cells = [r["label"], r["processes"] or "-"]
        cells += [m.get(f"{n}.jobs_per_s") for n in names]
        ratios = [m.get("queuetopia_async.x_best_peer"), m.get("queuetopia_plain.x_best_peer")]
        cells += [None if x is None else f"{x:.2f}x" for x in ratios]
        verdict = _verdict(r, False)
        if target and timing and verdict == "ok":
            met = all(x is not None and x >= target for x in ratios)
            verdict = ("meets" if met else "misses") + f" >= {target:g}x"
        cells += [f">= {target:g}x" if target else "-", verdict]
        lines.append("| " + " | ".join(_fmt(v) for v in cells) + " |")
    lines.append("")
    lines.append("CPU per job (µs), worker processes / PostgreSQL server:")
    lines.append("")
    head = ["workload", "procs", *(SYSTEM_NAMES[n] for n in names)]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        m = r["median"]
        if m.get("queuetopia_plain.worker_cpu_us_per_job") is None:
            continue
        cells = [r["label"], r["processes"] or "-"]
        for n in names:
            w, p = m.get(f"{n}.worker_cpu_us_per_job"), m.get(f"{n}.pg_cpu_us_per_job")
            cells.append(f"{_fmt(w)} / {_fmt(p)}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    for r in results:
        m = r["median"]
        if m.get("floor.update_commits_per_s"):
            lines.append(
                f"One queue against pgbench's 1-client one-row-update-per-commit rate "
                f"({m['floor.update_commits_per_s']:,.0f}/s, same run): `async def` "
                f"{_fmt(m.get('queuetopia_async.x_floor'))}x, plain "
                f"{_fmt(m.get('queuetopia_plain.x_floor'))}x (target >= 0.5x)."
            )
            lines.append("")
    return lines


# -- main -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller sets, 1 run")
    mode.add_argument("--smoke", action="store_true", help="seconds; correctness only (CI)")
    parser.add_argument("--only", action="append", default=[], help="workload name (repeat)")
    parser.add_argument("--runs", type=int, help="runs per case (default 3, --quick 1)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--concurrency", type=int, default=10, help="per worker process")
    parser.add_argument(
        "--worker-log",
        choices=["cli", "json", "off"],
        default="off",
        help="worker logging: off (default: engine cost only; the `logging` workload "
        "measures the CLI's), as `queuetopia worker` (rich text), or JSON lines",
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy every worker process into this directory"
    )
    parser.add_argument("--peers", action="store_true", help="also run procrastinate, PgQueuer")
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument("--plot", type=Path, help="draw the growth workloads into this PNG")
    args = parser.parse_args(argv)

    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = w.SIZES[mode_name]
    runs = args.runs or (3 if mode_name == "full" else 1)
    selected = cases(sizes, args.peers)
    if args.list:
        for c in selected:
            print(f"{c.name:16} {c.label}")
        return 0
    if args.only:
        wanted = {n for item in args.only for n in item.split(",")}
        unknown = wanted - {c.name for c in selected} - {"peers"}
        if unknown:
            parser.error(f"unknown workload(s) {sorted(unknown)}; see --list")
        selected = [
            c for c in selected if c.name in wanted or (c.table == "peers" and "peers" in wanted)
        ]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])
    doc: dict[str, Any] = {
        "command": command,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": mode_name,
        "runs": runs,
        "concurrency": args.concurrency,
        "worker_log": args.worker_log,
        "git": git_rev(),
        "machine": machine(),
    }
    where = "$QUEUETOPIA_BENCH_DSN" if os.environ.get("QUEUETOPIA_BENCH_DSN") else "embedded"
    log(f"starting PostgreSQL ({where})")
    db = open_database()
    try:
        doc["postgres"] = settings(db)
        doc["database"] = "embedded pgserver" if db.embedded else "$QUEUETOPIA_BENCH_DSN"
        ctx = w.Context(
            db, sizes, args.concurrency, args.worker_log, mode_name != "smoke", log, args.profile
        )
        results = []
        for case in selected:
            log(f"{case.label}" + (f" [{case.processes} proc]" if case.processes else ""))
            results.append(run_case(case, ctx, min(runs, case.max_runs or runs)))
        doc["results"] = results
    finally:
        db.close()
    doc["machine"]["load_after"] = os.getloadavg()
    doc["load_after"] = os.getloadavg()
    text = report(doc)
    doc["markdown"] = text
    print(text)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, default=str))
        log(f"wrote {args.json}")
    if args.plot:
        from bench.plot import plot

        plot(doc, args.plot)
        log(f"wrote {args.plot}")
    failed = [r for r in doc["results"] if not r["ok"]]
    if failed:
        log(f"CORRECTNESS FAILURE in: {', '.join(sorted({r['name'] for r in failed}))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
