"""The embedded default (SPEC §7), checked in subprocesses so no test touches ./."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
{setup}
from queuetopia import Queuetopia, QueuetopiaError
topia = Queuetopia()
try:
    print(topia.migrate() is not None)
except QueuetopiaError as exc:
    print("error:", exc)
    sys.exit(3)
"""


def run(tmp_path: Path, setup: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "QUEUETOPIA_DSN"}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(setup=setup)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_a_dsn_the_embedded_server_starts_under_dot_queuetopia(tmp_path: Path) -> None:
    result = run(tmp_path, "import logging; logging.basicConfig(level=logging.INFO)")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".queuetopia" / "PG_VERSION").exists()
    assert result.stderr.count("using the embedded PostgreSQL") == 1


def test_without_the_extra_the_error_says_how_to_set_a_dsn(tmp_path: Path) -> None:
    result = run(tmp_path, "sys.modules['pgserver'] = None  # as if not installed")
    assert result.returncode == 3
    assert "set QUEUETOPIA_DSN" in result.stdout
    assert "queuetopia[embedded]" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
