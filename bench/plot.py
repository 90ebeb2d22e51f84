"""Draw how throughput grows (worker processes, queues) from a results JSON of
`bench/run.py --json`: `python bench/plot.py results.json docs/img/growth.png`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def series(doc: dict[str, Any]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(processes, jobs/s) of the ordered drains and (queues, claims/s) of the sets."""
    by_procs, by_queues = [], []
    for r in doc["results"]:
        if r["table"] != "growth" or not r["ok"]:
            continue
        rate = r["median"].get("jobs_per_s") or 0.0
        if "queues" in r["median"]:
            by_queues.append((int(r["median"]["queues"]), rate))
        else:
            by_procs.append((int(r["processes"]), rate))
    return sorted(by_procs), sorted(by_queues)


def plot(doc: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_procs, by_queues = series(doc)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    if by_procs:
        left.plot(*zip(*by_procs, strict=True), marker="o")
    left.set(title="Ordered drain by worker processes", xlabel="worker processes",
             ylabel="jobs/s")  # fmt: skip
    left.set_xticks([p for p, _ in by_procs] or [1])
    if by_queues:
        right.plot(*zip(*by_queues, strict=True), marker="o")
    right.set(title="Claim rate by number of queues", xlabel="queues (log)", ylabel="jobs/s",
              xscale="log")  # fmt: skip
    for ax in (left, right):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    machine = doc.get("machine", {})
    fig.suptitle(
        f"queuetopia {doc.get('git', '').split(' at ')[-1]} · {machine.get('nproc')} CPUs · "
        f"PostgreSQL {doc.get('postgres', {}).get('server_version')} · {doc.get('date', '')}",
        fontsize=8,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
