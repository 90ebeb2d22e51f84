"""The side-by-side tables: jobs/s per system (medians), queuetopia's ratio to the best
peer (the median of the ratios of each run), the I/O workloads' share of the ceiling,
CPU per job, and the one-queue ratio to pgbench."""

from __future__ import annotations

from typing import Any

from bench.report_tables import Result, fmt

SYSTEM_NAMES = {
    "queuetopia_async": "queuetopia `async def`",
    "queuetopia_plain": "queuetopia plain",
    "pgqueuer": "PgQueuer",
    "procrastinate": "procrastinate",
}


def peer_tables(results: list[Result], timing: bool) -> list[str]:
    lines = ["## Side by side with the peers (same server, same run, same body)", ""]
    lines += _rates(results, timing)
    lines += _io(results)
    lines += _cpu(results)
    lines += _floor(results)
    return lines


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(fmt(v) for v in cells) + " |"


def _head(head: list[str]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def _target(r: Result) -> str:
    """The target as written in the table: the first of queuetopia's, say `>= 2x`."""
    for name in r["targets"]:
        metric, _, rest = name.partition(" ")
        unit = "x" if metric.endswith("x_best_peer") else " % of the ceiling"
        return f"{rest}{unit}"
    return "-"


def _peer_verdict(r: Result, timing: bool) -> str:
    if not r["ok"]:
        return "**WRONG**"
    met = list(r["targets"].values())
    if not timing or not met:
        return "ok"
    if any(ok is None for ok in met):
        return "-"
    return ("meets " if all(met) else "misses ") + _target(r)


def _rates(results: list[Result], timing: bool) -> list[str]:
    names = list(SYSTEM_NAMES)
    head = ["workload", "procs", *(SYSTEM_NAMES[n] + " jobs/s" for n in names)]
    lines = _head([*head, "async / best peer", "plain / best peer", "target", "result"])
    for r in results:
        m = r["median"]
        ratios = [m.get("queuetopia_async.x_best_peer"), m.get("queuetopia_plain.x_best_peer")]
        cells = [r["label"], r["processes"] or "-", *(m.get(f"{n}.jobs_per_s") for n in names)]
        cells += [None if x is None else f"{x:.2f}x" for x in ratios]
        lines.append(_row([*cells, _target(r), _peer_verdict(r, timing)]))
    return [*lines, ""]


def _io(results: list[Result]) -> list[str]:
    """The I/O workloads: share of the ceiling, finished or not, rejected connections."""
    chosen = [r for r in results if any(k.endswith(".pct_of_ceiling") for k in r["median"])]
    if not chosen:
        return []
    lines = ["I/O-bound, share of the ceiling (finished? 'too many clients' in its log):", ""]
    lines += _head(["workload", *SYSTEM_NAMES.values()])
    for r in chosen:
        m = r["median"]
        cells: list[Any] = [r["label"]]
        for n in SYSTEM_NAMES:
            pct = m.get(f"{n}.pct_of_ceiling")
            done = "finished" if m.get(f"{n}.finished") else "not finished"
            told = m.get(f"{n}.too_many_clients")
            cells.append("-" if pct is None else f"{pct:.0f} % ({done}; {fmt(told)})")
        lines.append(_row(cells))
    return [*lines, ""]


def _cpu(results: list[Result]) -> list[str]:
    names = list(SYSTEM_NAMES)
    lines = ["CPU per job (µs), worker processes / PostgreSQL server (= the sum):", ""]
    lines += _head(["workload", "procs", *(SYSTEM_NAMES[n] for n in names)])
    for r in results:
        m = r["median"]
        if m.get("queuetopia_plain.worker_cpu_us_per_job") is None:
            continue
        cells = [r["label"], r["processes"] or "-"]
        for n in names:
            w, p = m.get(f"{n}.worker_cpu_us_per_job"), m.get(f"{n}.pg_cpu_us_per_job")
            total = None if w is None or p is None else w + p
            cells.append(f"{fmt(w)} / {fmt(p)} (= {fmt(total)})")
        lines.append(_row(cells))
    return [*lines, ""]


def _floor(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        m = r["median"]
        if m.get("floor.update_commits_per_s"):
            lines += [
                f"One queue against pgbench's 1-client one-row-update-per-commit rate "
                f"({m['floor.update_commits_per_s']:,.0f}/s, same run): `async def` "
                f"{fmt(m.get('queuetopia_async.x_floor'))}x, plain "
                f"{fmt(m.get('queuetopia_plain.x_floor'))}x (target >= 0.5x).",
                "",
            ]
    return lines
