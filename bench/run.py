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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Appended, not prepended: an engine on $PYTHONPATH (say an exported commit) wins over
# the checkout this file lives in, for this process and the worker processes alike.
sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench.cases import Case, cases
from bench.context import SIZES, Context
from bench.db import open_database, settings
from bench.report import report

Metrics = dict[str, Any]


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


def run_case(case: Case, ctx: Context, runs: int) -> dict[str, Any]:
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
    sizes = SIZES[mode_name]
    runs = args.runs or (3 if mode_name == "full" else 1)
    selected = cases(sizes, args.peers)
    if args.list:
        for c in selected:
            print(f"{c.name:26} {c.label}" + (f" [{c.processes} proc]" if c.processes else ""))
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
    ctx = Context(
        db, sizes, args.concurrency, args.worker_log, mode_name != "smoke", log, args.profile
    )
    try:
        doc["postgres"] = settings(db)
        doc["database"] = "embedded pgserver" if db.embedded else "$QUEUETOPIA_BENCH_DSN"
        results = []
        for case in selected:
            log(f"{case.label}" + (f" [{case.processes} proc]" if case.processes else ""))
            # a long case runs once, unless --runs asks for more
            times = runs if args.runs else min(runs, case.max_runs or runs)
            results.append(run_case(case, ctx, times))
        doc["results"] = results
    finally:
        ctx.close()  # a server of its own for the I/O workloads, if one was needed
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
