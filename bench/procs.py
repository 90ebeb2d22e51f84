"""Worker processes for a run: start N `bench.worker_proc` processes on one scope, wait
until they listen, stop them with SIGTERM and collect what each one ran."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WorkerLog:
    pid: int
    count: int
    ids: list[int]
    t0: list[float]
    t1: list[float]


@dataclass
class Workers:
    dsn: str
    scope: str
    processes: int
    concurrency: int
    log_mode: str = "cli"
    record: str = "log"
    poll_interval: float = 60.0
    profile_dir: Path | None = None  # py-spy each worker (raw collapsed stacks) into here
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    spies: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _dir: Path | None = None
    stopped_cleanly: bool = True

    def start(self, wait_ready: bool = True, timeout: float = 60.0) -> Workers:
        self._dir = Path(tempfile.mkdtemp(prefix="queuetopia-bench-workers-"))
        for i in range(self.processes):
            env = {
                **os.environ,
                "QUEUETOPIA_DSN": self.dsn,
                "QUEUETOPIA_BENCH_SCOPE": self.scope,
                "QUEUETOPIA_BENCH_LOG": str(self._dir / f"ran-{i}.json"),
                "QUEUETOPIA_BENCH_RECORD": self.record,
                "QUEUETOPIA_BENCH_POLL": str(self.poll_interval),
                "PYTHONUNBUFFERED": "0",
            }
            out = open(self._dir / f"worker-{i}.log", "wb")  # noqa: SIM115 (closed by the child)
            # $QUEUETOPIA_BENCH_WORKER: another worker script (say, one patched to test a fix)
            script = os.environ.get(
                "QUEUETOPIA_BENCH_WORKER", str(ROOT / "bench" / "worker_proc.py")
            )
            cmd = [
                sys.executable,
                script,
                "--concurrency",
                str(self.concurrency),
                "--ready",
                str(self._dir / f"ready-{i}"),
                "--log-mode",
                self.log_mode,
            ]
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            out.close()
            self.procs.append(proc)
            if self.profile_dir is not None:
                self._spy(proc.pid, i)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def _spy(self, pid: int, i: int) -> None:
        """py-spy the worker until it exits: samples of the thread holding the GIL (the
        Python CPU) as collapsed stacks, one file per worker process and run."""
        assert self.profile_dir is not None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{self.scope}-worker{i}.txt"
        cmd = ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
        cmd += ["--gil"]  # only the thread holding the GIL: where Python CPU goes
        cmd += ["--output", str(out), "--nonblocking"]
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.spies.append(spy)

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self._dir is not None
        deadline = time.monotonic() + timeout
        for i, proc in enumerate(self.procs):
            ready = self._dir / f"ready-{i}"
            while not ready.exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {i} exited early:\n{self.output(i)[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker {i} not ready after {timeout}s")
                time.sleep(0.01)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def output(self, i: int) -> str:
        assert self._dir is not None
        path = self._dir / f"worker-{i}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 60.0) -> list[WorkerLog]:
        """SIGTERM (graceful), wait, collect the run logs; SIGKILL if one hangs."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.stopped_cleanly = False
                proc.kill()
                proc.wait()
        for proc in self.procs:
            if proc.returncode not in (0, -signal.SIGTERM):
                self.stopped_cleanly = False
        for spy in self.spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        return self.logs()

    def logs(self) -> list[WorkerLog]:
        assert self._dir is not None
        out = []
        for i in range(len(self.procs)):
            path = self._dir / f"ran-{i}.json"
            if not path.exists():
                continue
            data: dict[str, Any] = json.loads(path.read_text())
            out.append(WorkerLog(data["pid"], data["count"], data["ids"], data["t0"], data["t1"]))
        return out

    def warnings(self) -> list[str]:
        """Warning/error lines the workers logged (a clean run has none). Reported,
        not failed on: the database and run-log checks decide correctness."""
        lines = []
        for i in range(len(self.procs)):
            for line in self.output(i).splitlines():
                low = line.lower()
                if "traceback" in low or "error" in low or "warning" in low:
                    lines.append(f"worker {i}: {line.strip()[:300]}")
        return lines

    def count_in_output(self, needle: str) -> int:
        """How often the workers' output says `needle` (case-insensitive)."""
        needle = needle.lower()
        return sum(self.output(i).lower().count(needle) for i in range(len(self.procs)))

    def died(self) -> list[str]:
        """The workers that exited by themselves, with their exit status."""
        return [
            f"worker {i} exited with status {p.returncode}"
            for i, p in enumerate(self.procs)
            if p.poll() is not None
        ]

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for spy in self.spies:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
        if self._dir is not None:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (kB) of a process from /proc."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # the command name may hold spaces: fields start after its closing parenthesis
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a live process (its threads included)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def server_cpu_seconds(postmaster: int | None) -> float | None:
    """CPU of a local PostgreSQL: the postmaster, its live children, and the children
    it has already reaped (cutime/cstime), so exiting backends are not lost."""
    if postmaster is None:
        return None
    fields = _stat_fields(postmaster)
    if fields is None:
        return None
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        child = _stat_fields(int(entry))
        if child is not None and int(child[1]) == postmaster:
            total += int(child[11]) + int(child[12])
    return total / _TICK


@dataclass
class CpuMeter:
    """CPU used by the worker processes and the server between start() and stop()."""

    pids: list[int]
    postmaster: int | None
    _w0: float = 0.0
    _s0: float | None = None
    worker: float | None = None
    server: float | None = None

    def start(self) -> CpuMeter:
        self._w0 = sum(cpu_seconds(p) or 0.0 for p in self.pids)
        self._s0 = server_cpu_seconds(self.postmaster)
        return self

    def stop(self) -> None:
        self.worker = sum(cpu_seconds(p) or 0.0 for p in self.pids) - self._w0
        s1 = server_cpu_seconds(self.postmaster)
        self.server = None if s1 is None or self._s0 is None else s1 - self._s0

    def per_job(self, jobs: int) -> dict[str, float | None]:
        def us(v: float | None) -> float | None:
            return None if v is None or jobs <= 0 else round(v / jobs * 1e6, 1)

        return {"worker_cpu_us_per_job": us(self.worker), "pg_cpu_us_per_job": us(self.server)}
