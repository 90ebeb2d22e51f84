"""Same-run A/B of two engines on one in-process drain, alternated pair by pair.

    python bench/ab.py BASE_COMMIT [--head COMMIT] [--workload ordered|many|one] [--pairs 10]

Extracts BASE_COMMIT's `queuetopia/` (git archive) into a temporary directory (and
HEAD's, with --head; else A is this checkout), then runs, pair by pair, one child
process per measurement, A then B, then B then A in the next pair (so neither always
goes first): the engine A and the base B, each draining the same jobs (a no-op plain
action) with one in-process worker of concurrency 10 on one embedded PostgreSQL shared
by all measurements. Prints each pair's ratios and their medians: jobs/s A/B (above 1:
A is faster) and process CPU per job A/B (below 1: A is cheaper). Single pairs swing
widely on a shared machine; quote the medians of many pairs (docs/performance.md)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"ordered": (100, 40), "many": (1000, 4), "one": (1, 1500)}


def measure(dsn: str, workload: str) -> dict[str, float]:
    """In the child: drain one workload, return jobs/s and CPU µs per job."""
    from queuetopia import Queuetopia

    topia = Queuetopia(dsn=dsn, scope=f"ab-{uuid.uuid4().hex[:8]}")
    done: list[int] = []

    @topia.action("noop")
    def noop(q: int, i: int) -> None:
        done.append(1)

    topia.migrate()
    queues, per = SIZES[workload]
    for q in range(queues):
        noop.delay_many(f"q{q}", [{"q": q, "i": i} for i in range(per)])
    total = queues * per
    cpu, wall = time.process_time(), time.perf_counter()
    worker = topia.worker(concurrency=10).start()
    while len(done) < total:
        time.sleep(0.002)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    worker.stop()
    topia.close()
    return {"jobs_per_s": total / wall, "cpu_us": cpu / total * 1e6}


def base_tree(commit: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "queuetopia", "migrations"],
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryFile() as tmp:
        tmp.write(archive)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            tar.extractall(into, filter="data")
    return into


def child(path: Path, dsn: str, workload: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", dsn, workload],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),  # not this checkout: PYTHONPATH decides the engine
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base")
    parser.add_argument("--head", help="the commit measured as A (default: this checkout)")
    parser.add_argument("--workload", choices=sorted(SIZES), default="ordered")
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    import pgserver  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory(prefix="queuetopia-ab-") as tmp:
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        base = base_tree(args.base, Path(tmp) / "base")
        head = ROOT if args.head is None else base_tree(args.head, Path(tmp) / "head")
        ratios: dict[str, list[float]] = {"jobs_per_s": [], "cpu_us": []}
        print(f"A = {args.head or 'this checkout'}, B = {args.base}; workload {args.workload}")
        for i in range(args.pairs):
            if i % 2 == 0:
                a = child(head, server.get_uri(), args.workload)
                b = child(base, server.get_uri(), args.workload)
            else:
                b = child(base, server.get_uri(), args.workload)
                a = child(head, server.get_uri(), args.workload)
            for key in ratios:
                ratios[key].append(a[key] / b[key])
            print(
                f"pair {i + 1}: jobs/s {a['jobs_per_s']:.0f} vs {b['jobs_per_s']:.0f}, "
                f"CPU/job {a['cpu_us']:.0f} vs {b['cpu_us']:.0f} µs"
            )
        for key, values in ratios.items():
            shown = " ".join(f"{r:.2f}" for r in values)
            print(f"{key} A/B: median {statistics.median(values):.3f}  [{shown}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
