"""The markdown report of a run: the exact command and the machine at the top, then one
table per kind of workload (only those that ran), every ratio computed within the
run, and the correctness verdict at the end."""

from __future__ import annotations

from typing import Any

from bench.peer_report import peer_tables
from bench.report_tables import Result, fmt, section, verdict

Doc = dict[str, Any]


def report(doc: Doc) -> str:
    timing = doc["mode"] != "smoke"
    results: list[Result] = doc["results"]
    lines = _header(doc)
    for part in (
        _throughput,
        _latency,
        _scale,
        _growth,
        _memory,
        _floor,
        _io,
        _connections,
        _snapshot,
    ):
        lines += part(results, timing, doc)
    peers = [r for r in results if r["table"] == "peers"]
    if peers:
        lines += peer_tables(peers, timing)
    return "\n".join(lines + _correctness(results))


def _header(doc: Doc) -> list[str]:
    machine = doc["machine"]
    return [
        "# Queuetopia benchmark",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"- mode {doc['mode']}, {doc['runs']} run(s) per case (medians), worker concurrency "
        f"{doc['concurrency']}, worker logging `{doc['worker_log']}`, engine {doc['git']}",
        f"- machine: {machine['nproc']} CPUs ({machine['cpu']}), "
        f"{machine['memory']} RAM, Python {machine['python']}; "
        f"load average before {tuple(round(x, 2) for x in machine['load_before'])}, "
        f"after {tuple(round(x, 2) for x in doc.get('load_after', ()))}",
        f"- PostgreSQL {doc['postgres'].get('server_version')} ({doc['database']}): "
        + ", ".join(
            f"{k}={v}" for k, v in doc["postgres"].items() if k not in ("version", "server_version")
        ),
        "",
    ]


def _runs_of(r: Result, key: str) -> str:
    return " / ".join(fmt(m.get(key)) for m in r["runs"])


def _cpu_sum(m: dict[str, Any], prefix: str = "") -> float | None:
    worker, server = m.get(f"{prefix}worker_cpu_us_per_job"), m.get(f"{prefix}pg_cpu_us_per_job")
    if worker is None or server is None:
        return None
    return float(worker) + float(server)


def _throughput(results: list[Result], timing: bool, doc: Doc) -> list[str]:
    lines = section(
        "Throughput (no-op jobs)",
        [r for r in results if r["table"] == "throughput"],
        ["workload", "worker procs", "jobs/s (median)", "runs", "worker CPU µs/job",
         "PG CPU µs/job", "worker + PG CPU µs/job", "commits/job", "WAL B/job", "stalls",
         "load avg", "result"],
        lambda r: [
            r["label"],
            r["processes"] or "-",
            r["median"].get("jobs_per_s"),
            _runs_of(r, "jobs_per_s"),
            r["median"].get("worker_cpu_us_per_job"),
            r["median"].get("pg_cpu_us_per_job"),
            _cpu_sum(r["median"]),
            r["median"].get("commits_per_job"),
            r["median"].get("wal_bytes_per_job"),
            sum(m.get("stalls", 0) for m in r["runs"]) if r["processes"] else None,
            r.get("load"),
            verdict(r, timing),
        ],
    )  # fmt: skip
    for r in results:
        m = r["median"]
        if r["name"] == "one_queue" and m.get("floor_1_client_commits_per_s") and timing:
            lines += [
                f"One hot queue against pgbench's one-client one-row-update-per-commit rate, "
                f"same run: {fmt(m.get('jobs_per_s'))} jobs/s / "
                f"{fmt(m['floor_1_client_commits_per_s'])} commits/s = "
                f"**{fmt(m.get('x_floor'))}x** (target >= 0.5x; runs: {_runs_of(r, 'x_floor')}).",
                "",
            ]
    return lines


def _latency(results: list[Result], timing: bool, doc: Doc) -> list[str]:
    return section(
        "Latency (enqueue commit -> action start)",
        [r for r in results if r["table"] == "latency"],
        ["workload", "samples", "p50 ms", "p95 ms", "p99 ms", "max ms", "result"],
        lambda r: [
            r["label"],
            *(r["median"].get(k) for k in ("samples", "p50_ms", "p95_ms", "p99_ms", "max_ms")),
            verdict(r, timing),
        ],
    )


def _scale(results: list[Result], timing: bool, doc: Doc) -> list[str]:
    keys = ("jobs_per_s", "LEASE_ACQUIRE_ms", "LEASE_ACQUIRE_explain_ms", "JOB_CLAIM_HEAD_ms",
            "QUEUE_ANY_DUE_ms", "QUEUE_NEXT_DUE_ms", "worker_cpu_us_per_job",
            "pg_cpu_us_per_job", "load_seconds")  # fmt: skip
    chosen = [r for r in results if r["table"] == "scale"]
    lines = section(
        "Scale (2 worker processes; statements timed in rolled-back transactions)",
        chosen,
        ["set", "claim rate jobs/s", "LEASE_ACQUIRE ms", "(EXPLAIN ms)", "JOB_CLAIM_HEAD ms",
         "QUEUE_ANY_DUE ms", "QUEUE_NEXT_DUE ms", "worker CPU µs/job", "PG CPU µs/job",
         "load s", "result"],
        lambda r: [r["label"], *(r["median"].get(k) for k in keys), verdict(r, timing)],
    )  # fmt: skip
    good = [r for r in chosen if r["ok"]]
    if len(good) == 2 and timing:
        small, big = (r["median"].get("jobs_per_s") or 0 for r in good)
        ratio = big / small if small else 0.0
        doc["scale_ratio"] = round(ratio, 3)
        judged = "meets" if ratio >= 0.8 else "misses"
        lines += [f"Claim rate at scale / small: **{ratio:.0%}** ({judged} target >= 80%)", ""]
    return lines


def _growth(results: list[Result], timing: bool, doc: Doc) -> list[str]:
    return section(
        "Growth (worker processes; queues)",
        [r for r in results if r["table"] == "growth"],
        ["workload", "worker procs", "jobs/s (median)", "runs", "worker CPU µs/job",
         "PG CPU µs/job", "result"],
        lambda r: [
            r["label"],
            r["processes"],
            r["median"].get("jobs_per_s"),
            _runs_of(r, "jobs_per_s"),
            r["median"].get("worker_cpu_us_per_job"),
            r["median"].get("pg_cpu_us_per_job"),
            verdict(r, timing),
        ],
    )  # fmt: skip


def _memory(results: list[Result], timing: bool, doc: Doc) -> list[str]:
    keys = ("rss_idle_mb", "peak_rss_mb", "rss_end_mb", "jobs_per_s")
    return section(
        "Memory",
        [r for r in results if r["table"] == "memory"],
        ["workload", "RSS idle MB", "peak RSS (VmHWM) MB", "RSS at end MB", "jobs/s", "result"],
        lambda r: [r["label"], *(r["median"].get(k) for k in keys), verdict(r, timing)],
    )


def _floor(results: list[Result], timing: bool, doc: Doc) -> list[str]:
    lines = section(
        "Floor: what PostgreSQL itself does on this server (pgbench, -M prepared)",
        [r for r in results if r["table"] == "floor"],
        ["pgbench", "1-row UPDATE commits/s", "claim+finish jobs/s (2 commits/job)", "result"],
        lambda r: [
            r["label"],
            r["median"].get("update_commits_per_s"),
            r["median"].get("claim_finish_jobs_per_s"),
            verdict(r, timing) if "skipped" not in r["median"] else r["median"]["skipped"],
        ],
    )
    floors = [
        r["median"].get("claim_finish_jobs_per_s")
        for r in results
        if r["table"] == "floor" and r["median"].get("clients") == 2
    ]
    if floors and floors[0] and timing:
        best = floors[0]
        lines += [
            f"Queuetopia as a fraction of the 2-client claim+finish floor ({best:,.0f}/s):",
            "",
        ]
        for r in results:
            if r["table"] == "throughput" and r["processes"] and r["median"].get("jobs_per_s"):
                frac = r["median"]["jobs_per_s"] / best
                lines.append(f"- {r['label']}, {r['processes']} proc: {frac:.0%}")
        lines.append("")
    return lines


def _io(results: list[Result], timing: bool, doc: Doc) -> list[str]:
    return section(
        "I/O-bound (jobs waiting on the network; server at max_connections=100)",
        [r for r in results if r["table"] == "io"],
        ["workload", "jobs/s (median)", "runs", "share of the ceiling", "ceiling jobs/s",
         "jobs done", "'too many clients' (worker log / server log)", "worker CPU µs/job",
         "result"],
        lambda r: [
            r["label"],
            r["median"].get("jobs_per_s"),
            _runs_of(r, "jobs_per_s"),
            _pct(r["median"].get("pct_of_ceiling")),
            r["median"].get("ceiling_jobs_per_s"),
            f"{fmt(r['median'].get('done'))} of {fmt(r['median'].get('jobs'))}",
            f"{fmt(r['median'].get('too_many_clients_logged'))} / "
            f"{fmt(r['median'].get('too_many_clients_rejected'))}",
            r["median"].get("worker_cpu_us_per_job"),
            verdict(r, timing),
        ],
    )  # fmt: skip


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.0f} %"


def _connections(results: list[Result], timing: bool, doc: Doc) -> list[str]:
    lines = section(
        "Connections per worker process (pg_stat_activity, sampled every 10 ms)",
        [r for r in results if r["table"] == "connections"],
        ["workload", "idle (max)", "draining (max)", "server max_connections",
         "application_name at the peak", "'too many clients'", "result"],
        lambda r: [
            r["label"],
            r["median"].get("idle_max"),
            r["median"].get("draining_max"),
            r["median"].get("max_connections"),
            ", ".join(f"{k or '(none)'} x{v}" for k, v in
                      (r["median"].get("application_names_at_peak") or {}).items()) or "-",
            r["median"].get("too_many_clients_logged"),
            verdict(r, timing),
        ],
    )  # fmt: skip
    return lines


def _snapshot(results: list[Result], timing: bool, doc: Doc) -> list[str]:
    chosen = [r for r in results if r["table"] == "snapshot"]
    lines = section(
        "Steady load with a held snapshot (backlog in seconds of work at the arrival rate)",
        chosen,
        ["workload", "jobs/s first / last", "last / first", "hot queue jobs/s first / last",
         "max backlog s", "max oldest wait s", "xmin age at end", "dead tuples at end",
         "producer jobs/s (lag p99 ms)", "result"],
        lambda r: [
            r["label"],
            f"{fmt(r['median'].get('first_jobs_per_s'))} / "
            f"{fmt(r['median'].get('last_jobs_per_s'))}",
            r["median"].get("last_over_first"),
            f"{fmt(r['median'].get('hot_first_jobs_per_s'))} / "
            f"{fmt(r['median'].get('hot_last_jobs_per_s'))}",
            r["median"].get("max_backlog_s"),
            r["median"].get("max_oldest_wait_s"),
            r["median"].get("xmin_age_at_end"),
            r["median"].get("dead_tuples_at_end"),
            f"{fmt(r['median'].get('producer_jobs_per_s'))} "
            f"({fmt(r['median'].get('producer_lag_p99_ms'))})",
            verdict(r, timing),
        ],
    )  # fmt: skip
    return lines + _snapshot_windows(chosen)


def _snapshot_windows(chosen: list[Result]) -> list[str]:
    """Per window, each case side by side: jobs done/s (hot queue), backlog, oldest."""
    series = [(r, r["runs"][0].get("windows") or []) for r in chosen if r["runs"]]
    series = [(r, w) for r, w in series if w]
    if not series:
        return []
    head = ["window end s"]
    for r, _ in series:
        tag = "baseline" if "baseline" in r["label"] else "held"
        head += [f"{tag}: jobs/s (hot)", f"{tag}: backlog s", f"{tag}: oldest wait s"]
    by_t = [{w["t"]: w for w in windows} for _, windows in series]
    lines = ["Per window (first run of each):", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(head))
    for t in sorted({t for found in by_t for t in found}):
        cells = [fmt(int(t)) if float(t).is_integer() else fmt(t)]
        for found in by_t:
            w = found.get(t, {})
            cells += [
                f"{fmt(w.get('jobs_per_s'))} ({fmt(w.get('hot_jobs_per_s'))})",
                fmt(w.get("backlog_s")),
                fmt(w.get("oldest_wait_s")),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _correctness(results: list[Result]) -> list[str]:
    failures = [p for r in results for p in r["problems"]]
    lines = ["## Correctness", ""]
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
        lines += ["Warnings the workers logged (not correctness failures):", ""]
        lines.extend(f"- {x}" for x in notes[:20])
        lines.append("")
    return lines
