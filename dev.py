#!/usr/bin/env python3
"""Bootstrap and run: `python3 dev.py demo`, `python3 dev.py test [pytest args]`,
`python3 dev.py test-django6 [pytest args]` (only the Django 6 tests, see below),
`python3 dev.py lint`, `python3 dev.py docs` (builds the documentation into site/), or
`python3 dev.py reliability` (runs the chaos suite and the soak, then regenerates
docs/reliability.md from their figures; see tests/chaos/report.py).

Needs only Python 3.11+: it creates .venv/, installs queuetopia with its dev and
embedded extras (again only when pyproject.toml changes), then runs the command.

`test` with no arguments also runs tests/test_django_tasks*.py on Django 6, which needs
Python 3.12+: in .venv/django6/, made with the first python3.12 (or 3.13) found in
pyenv's versions or on PATH. Without one it says so in one line and skips them; in CI
(CI=true) it fails instead.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
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


# -- the Django 6 tests, on a second interpreter (docs/django.md) ------------------------

DJANGO6_VENV = VENV / "django6"
DJANGO6_BIN = DJANGO6_VENV / ("Scripts" if os.name == "nt" else "bin")
DJANGO6_TESTS = "tests/test_django_tasks*.py"
DJANGO6_DEPS = ["django>=6.1", "pytest>=8", "pytest-timeout>=2.3"]


def python312() -> str | None:
    """A Python 3.12+ interpreter: pyenv's (its shims need PYENV_VERSION), else on PATH."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(f"{root}/versions/3.1[23].*/bin/python3.1[23]"))
    found += [p for p in map(shutil.which, ("python3.12", "python3.13")) if p]
    probe = "import sys; sys.exit(sys.version_info < (3, 12))"
    return next((p for p in found if subprocess.call([p, "-c", probe]) == 0), None)


def ensure_django6_env(python: str) -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = DJANGO6_VENV / ".installed"
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if not (DJANGO6_BIN / "python").exists():
        print(f"creating .venv/django6 with {python} ...", flush=True)
        subprocess.run([python, "-m", "venv", str(DJANGO6_VENV)], check=True)
    print("installing queuetopia[django,embedded] and Django 6 into .venv/django6 ...", flush=True)
    pip = [str(DJANGO6_BIN / "python"), *PIP[1:]]
    subprocess.run([*pip, "-e", f"{ROOT}[django,embedded]", *DJANGO6_DEPS], check=True)
    stamp.write_text(wanted)


def test_django6(args: list[str]) -> int:
    """tests/test_django_tasks*.py on Django 6, in .venv/django6."""
    python = python312()
    if python is None:
        if os.environ.get("CI") == "true":
            print(
                f"error: {DJANGO6_TESTS} on Django 6 need Python 3.12+: none found", file=sys.stderr
            )
            return 1
        print(f"skipped {DJANGO6_TESTS} on Django 6: no Python 3.12+ (on PATH or in pyenv)")
        return 0
    ensure_django6_env(python)
    tests = sorted(glob.glob(str(ROOT / DJANGO6_TESTS)))
    print(f"Django 6 tests on {python}:", flush=True)
    return subprocess.call([str(DJANGO6_BIN / "python"), "-m", "pytest", *tests, *args], cwd=ROOT)


def main(argv: list[str]) -> int:
    command, *rest = argv or ["help"]
    if command not in ("demo", "test", "test-django6", "lint", "docs", "bench", "reliability"):
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
    if command == "test-django6":
        return test_django6(rest)
    code = subprocess.call([str(BIN / "python"), "-m", "pytest", *rest], cwd=ROOT)
    # The README's `python3 dev.py test` runs both; with arguments, only what they name.
    return code if rest else max(code, test_django6([]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
