"""The CI-size soak in a loop (not in CI): each run a new seed, its figures and its
outcome kept, so that a failure that comes once in many runs is seen and its seed known.

    python tests/chaos/soak_loop.py --runs 30 --out DIR

writes DIR/loop.json (one object per run: seed, outcome, seconds, the soak's figures),
which `python tests/chaos/report.py --render DIR` shows in docs/reliability.md, and
DIR/loop-N.log (pytest's output of run N, kept for the failures)."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SOAK = "13 randomized"


def one(n: int, out: Path) -> dict[str, Any]:
    seed = random.SystemRandom().randrange(1 << 32)
    figures = out / f"loop-{n}.json"
    env = {
        **os.environ,
        "QUEUETOPIA_SOAK_SEED": str(seed),
        "QUEUETOPIA_CHAOS_REPORT": str(figures),
    }
    cmd = [sys.executable, "-m", "pytest", "tests/chaos/test_soak.py", "-k", "mixed", "-q"]
    began = time.monotonic()
    with (out / f"loop-{n}.log").open("wb") as log:
        status = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    run: dict[str, Any] = {
        "run": n,
        "seed": seed,
        "passed": status.returncode == 0,
        "seconds": round(time.monotonic() - began, 1),
    }
    if figures.exists():
        reports = [r for r in json.loads(figures.read_text()) if r["scenario"].startswith(SOAK)]
        if reports:
            run["report"] = reports[-1]
    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for n in range(1, args.runs + 1):
        runs.append(one(n, args.out))
        (args.out / "loop.json").write_text(json.dumps(runs, indent=1))
        last = runs[-1]
        print(f"run {n}: seed {last['seed']} {'passed' if last['passed'] else 'FAILED'}"
              f" in {last['seconds']} s", flush=True)  # fmt: skip
    return 0 if all(r["passed"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
