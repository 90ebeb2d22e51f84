#!/usr/bin/env python3
"""Bootstrap and run: `python3 dev.py demo`, `python3 dev.py test [pytest args]`,
`python3 dev.py lint`, `python3 dev.py docs` (builds the documentation into site/), or
`python3 dev.py reliability` (runs the chaos suite and the soak, then regenerates
docs/reliability.md from their figures; see tests/chaos/report.py).

Needs only Python 3.11+: it creates .venv/, installs queuetopia with its dev and
embedded extras (again only when pyproject.toml changes), then runs the command.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"
PIP = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
# mkdocs-material prints a banner about its successor on every build.
QUIET_MKDOCS = {"NO_MKDOCS_2_WARNING": "1"}
LINTED = ["queuetopia", "queuetopia_cli", "tests", "examples", "docs_src", "bench", "dev.py"]


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by an older python3
        sys.exit("queuetopia needs Python 3.11 or newer")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing queuetopia[dev] into .venv ...", flush=True)
    subprocess.run([*PIP, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def ensure_bench_extra(args: list[str]) -> None:
    """`bench --peers` needs procrastinate and PgQueuer on asyncpg, `--plot` matplotlib:
    the bench extra, installed on first use (the dev extra leaves them out)."""
    if "--peers" not in args and not any(a.startswith("--plot") for a in args):
        return
    probe = [str(BIN / "python"), "-c", "import asyncpg, matplotlib, pgqueuer, procrastinate"]
    if subprocess.call(probe, stderr=subprocess.DEVNULL) != 0:
        print("installing queuetopia[bench] into .venv ...", flush=True)
        subprocess.run([*PIP, "-e", f"{ROOT}[dev,bench]"], check=True)


def main(argv: list[str]) -> int:
    command, *rest = argv or ["help"]
    if command not in ("demo", "test", "lint", "docs", "bench", "reliability"):
        print(__doc__)
        return 2
    ensure_env()
    if command == "demo":
        return subprocess.call([str(BIN / "queuetopia"), "demo", *rest])
    if command == "lint":
        steps = [
            [str(BIN / "ruff"), "format", "--check", *LINTED],
            [str(BIN / "ruff"), "check", *LINTED],
            [str(BIN / "mypy"), "queuetopia"],
        ]
        return max(subprocess.call(step, cwd=ROOT) for step in steps)
    if command == "bench":  # e.g. `python3 dev.py bench --quick`; see docs/performance.md
        ensure_bench_extra(rest)
        return subprocess.call([str(BIN / "python"), "bench/run.py", *rest], cwd=ROOT)
    if command == "reliability":  # docs/reliability.md from the chaos suite's figures
        return subprocess.call([str(BIN / "python"), "tests/chaos/report.py", *rest], cwd=ROOT)
    if command == "docs":  # every warning (a broken link, a missing snippet) is an error
        build = [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(ROOT / "site")]
        return subprocess.call([*build, *rest], cwd=ROOT, env={**os.environ, **QUIET_MKDOCS})
    return subprocess.call([str(BIN / "python"), "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
