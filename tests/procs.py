"""Helpers for tests that run the `queuetopia` command in subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("queuetopia"))
PROC_APP = "tests.apps.proc_app:topia"

# What tests/apps/proc_app.py logs: one row per execution, times from the database clock.
LOG_TABLE = """
CREATE TABLE IF NOT EXISTS proc_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope      text        NOT NULL,
    job_id     bigint      NOT NULL,
    queue      text        NOT NULL,
    n          integer     NOT NULL,
    attempt    integer     NOT NULL,
    pid        integer     NOT NULL,
    prev_error text,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at   timestamptz
)"""


def cli_env(dsn: str, **extra: str) -> dict[str, str]:
    """The environment of a `queuetopia` subprocess pointed at the test database."""
    env = {**os.environ, "QUEUETOPIA_DSN": dsn, **extra}
    env.pop("COLUMNS", None)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run `queuetopia ARGS` to completion and return what it printed."""
    return subprocess.run(
        [CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def worker_until_waiting(app: str, env: dict[str, str]) -> tuple[str, str, int]:
    """Run `queuetopia worker APP`; SIGTERM it once it says it waits for the database
    (docs/deploying.md). Its stdout, stderr and exit code."""
    proc = subprocess.Popen(
        [CLI, "worker", app], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "waiting for it" in line:
                proc.send_signal(signal.SIGTERM)
                break
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out, "".join(lines) + err, proc.returncode


@dataclass
class WorkerProcess:
    """A `queuetopia worker` subprocess; its JSON log goes to a file."""

    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for the worker's "started" log line (its listener may still be connecting)."""

        def ready() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"worker exited with {self.popen.returncode}:\n{self.log()}")
            return "started: scope" in self.log()

        wait_for(ready, timeout=timeout, interval=0.05, what=f"worker {self.pid} to start")

    def send(self, signum: signal.Signals) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)


class Workers:
    """Starts worker subprocesses and, at the end, kills those still running (by pid)."""

    def __init__(self, dsn: str, scope: str, **env: str) -> None:
        self.env = cli_env(dsn, QT_TEST_SCOPE=scope, **env)
        self.started: list[WorkerProcess] = []
        self._dir = Path(tempfile.mkdtemp(prefix="queuetopia-workers-"))

    def start(self, *args: str, app: str = PROC_APP) -> WorkerProcess:
        log_path = self._dir / f"worker-{len(self.started)}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [CLI, "worker", app, "--log-format", "json", *args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(popen, log_path)
        self.started.append(worker)
        return worker

    def cleanup(self) -> None:
        for worker in self.started:
            if worker.popen.poll() is None:
                worker.popen.kill()
                worker.popen.wait(timeout=10)


@contextmanager
def workers(dsn: str, scope: str, **env: str) -> Iterator[Workers]:
    group = Workers(dsn, scope, **env)
    try:
        yield group
    finally:
        group.cleanup()
