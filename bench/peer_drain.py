"""One side-by-side drain of one system: reset its tables, enqueue the set (each
system its documented way, in the asked arrival order), start its worker processes,
wait until every job is done (or the time limit), stop them, and check what they ran.

Jobs are enqueued before the workers start, for every system; the window runs from
the first start to the last end. CPU per job: each worker process records its own
process time at its first start and its last end; the server's is sampled from the
postmaster's children from the first finished job to the last."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.arrival import KEY_BY_KEY, arrival_order
from bench.peer_workers import (
    PEERS,
    SCOPE,
    UNORDERED,
    Row,
    available,
    key_name,
    payload,
    pgqueuer_queries,
    procrastinate_app,
    queuetopia_app,
)
from bench.procs import server_cpu_seconds
from queuetopia import JobRequest

ROOT = Path(__file__).resolve().parent.parent
# A system that has not drained a set by then is stopped; its rate is of what it ran.
TIME_LIMIT = 60.0
CHUNK = 1_000  # jobs per enqueue call when the whole set goes in one list
TOO_MANY = "too many clients"
Batches = list[list[tuple[int, int]]]


def psycopg_connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def reset(system: str, dsn: str) -> None:
    """Install the system's schema if missing and empty its tables."""
    if system == "procrastinate":
        with psycopg_connect(dsn) as conn:
            exists = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if exists is None or exists[0] is None:
            app = procrastinate_app(dsn)
            with app.open():
                app.schema_manager.apply_schema()
        with psycopg_connect(dsn) as conn:
            conn.execute("TRUNCATE procrastinate_jobs CASCADE")
    elif system == "pgqueuer":

        async def install() -> None:
            async with pgqueuer_queries(dsn) as (queries, conn):
                if await conn.fetchval("SELECT to_regclass('pgqueuer')") is None:
                    await queries.install()
                await conn.execute("TRUNCATE pgqueuer, pgqueuer_log")

        asyncio.run(install())
    else:
        from bench.db import TABLES

        with psycopg_connect(dsn) as conn:
            conn.execute("TRUNCATE " + ", ".join(TABLES))
    with psycopg_connect(dsn) as conn:
        conn.execute("CHECKPOINT")


@dataclass(frozen=True)
class SetShape:
    """keys x per_key jobs, arriving in `arrival` order; `unordered`: the peers run
    them without any order (queuetopia's queues stay ordered)."""

    keys: int
    per_key: int
    arrival: str = KEY_BY_KEY
    unordered: bool = False

    @property
    def jobs(self) -> int:
        return self.keys * self.per_key


def enqueue_set(system: str, dsn: str, shape: SetShape) -> None:
    """Key by key: one batch per key, as the drains always did. Interleaved: the
    round-robin list, in batches of CHUNK jobs. Each system its documented way."""
    pairs = arrival_order(shape.keys, shape.per_key, shape.arrival)
    batches = (
        [list(g) for _, g in itertools.groupby(pairs, key=lambda p: p[0])]
        if shape.arrival == KEY_BY_KEY
        else [pairs[c : c + CHUNK] for c in range(0, len(pairs), CHUNK)]
    )
    one_key = shape.arrival == KEY_BY_KEY
    if system == "procrastinate":
        _procrastinate_batches(dsn, batches, one_key, shape.unordered)
    elif system == "pgqueuer":
        asyncio.run(_pgqueuer_batches(dsn, batches, shape.unordered))
    else:
        _queuetopia_batches(dsn, system, batches, one_key)


def _queuetopia_batches(dsn: str, system: str, batches: Batches, one_key: bool) -> None:
    """A key's block with `delay_many`, a mixed list with `enqueue_many`."""
    with queuetopia_app(dsn, system) as topia:
        noop = topia.actions["noop"]
        for batch in batches:
            if one_key:
                noop.delay_many(key_name(batch[0][0]), [{"q": k, "i": i} for k, i in batch])
            else:
                topia.enqueue_many([JobRequest(key_name(k), "noop", {"q": k, "i": i})
                                    for k, i in batch])  # fmt: skip


def _procrastinate_batches(dsn: str, batches: Batches, one_key: bool, free: bool) -> None:
    """`lock=` per key keeps a key's jobs in order (`free`: no lock); a key's block
    with `batch_defer`, a mixed list with the job manager's `batch_defer_jobs`."""
    app = procrastinate_app(dsn)
    with app.open():
        task = app.tasks["noop"]
        for batch in batches:
            if one_key and not free:
                task.configure(lock=key_name(batch[0][0])).batch_defer(
                    *({"q": k, "i": i} for k, i in batch)
                )
                continue
            jobs = [
                (task if free else task.configure(lock=key_name(k))).make_new_job(q=k, i=i)
                for k, i in batch
            ]
            app.job_manager.batch_defer_jobs(jobs)


async def _pgqueuer_batches(dsn: str, batches: Batches, free: bool) -> None:
    """One entrypoint per key (ordered) or the one plain entrypoint (`free`)."""
    async with pgqueuer_queries(dsn) as (queries, _):
        for batch in batches:
            names = [UNORDERED if free else key_name(k) for k, _ in batch]
            payloads: list[bytes | None] = [payload(k, i) for k, i in batch]
            await queries.enqueue(names, payloads, [0] * len(batch))


REMAINING = {
    "procrastinate": "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
    "pgqueuer": "SELECT count(*) FROM pgqueuer",
}
QUEUETOPIA_REMAINING = "SELECT count(*) FROM queuetopia_jobs WHERE scope = %s AND state <> 'done'"


def remaining(system: str, conn: Any) -> int:
    if system in REMAINING:
        row = conn.execute(REMAINING[system]).fetchone()
    else:
        row = conn.execute(QUEUETOPIA_REMAINING, [SCOPE]).fetchone()
    return int(row[0]) if row else -1


@dataclass
class Outcome:
    """What one drain of one system left, for its metrics."""

    notes: list[str] = field(default_factory=list)  # reported, not failures
    problems: list[str] = field(default_factory=list)
    server_cpu: float = 0.0
    stopped_at: float = 0.0  # wall clock when the bench stopped waiting
    told: int = 0  # "too many clients" in the workers' output
    done: int = 0  # jobs done, by the system's own tables
    timed_out: bool = False

    def failure(self, what: str) -> None:
        """After refused connections, a lost record or a job run again is part of the
        failure the refusals caused (bench/verify.py, check_ran's `lost`)."""
        (self.notes if self.told else self.problems).append(what)


@dataclass
class Drain:
    system: str
    dsn: str
    shape: SetShape
    processes: int
    concurrency: int
    postmaster: int | None
    sleep: float = 0.0  # seconds each job waits
    time_limit: float = TIME_LIMIT

    def run(self) -> dict[str, Any]:
        if not available(self.system):
            return {"skipped": f"{self.system} not installed", "problems": []}
        reset(self.system, self.dsn)
        enqueue_set(self.system, self.dsn, self.shape)
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-{self.system}-"))
        try:
            procs = [self._spawn(tmp, p) for p in range(self.processes)]
            out = Outcome()
            self._wait(procs, out)
            self._stop(procs)
            out.told = sum(
                (tmp / f"out-{p}.log").read_text(errors="replace").lower().count(TOO_MANY)
                for p in range(self.processes)
            )
            with psycopg_connect(self.dsn) as conn:
                out.done = self.shape.jobs - remaining(self.system, conn)
            rows, cpu = self._collect(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # the records are read
        return self._metrics(rows, cpu, out)

    def _spawn(self, tmp: Path, p: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, str(ROOT / "bench" / "peers.py"), "worker", self.system]
        cmd += ["--dsn", self.dsn, "--concurrency", str(self.concurrency)]
        cmd += ["--keys", str(self.shape.keys), "--record", str(tmp / f"rec-{p}.json")]
        cmd += ["--sleep", str(self.sleep)]
        if self.shape.unordered:
            cmd.append("--unordered")
        with open(tmp / f"out-{p}.log", "wb") as out:
            return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def _wait(self, procs: list[subprocess.Popen[bytes]], out: Outcome) -> None:
        """Poll until every job is done; the server's CPU from the first finished job."""
        n = self.shape.jobs
        s0: float | None = None
        deadline = time.monotonic() + self.time_limit
        with psycopg_connect(self.dsn) as conn:
            while (left := remaining(self.system, conn)) > 0:
                if s0 is None and left < n:
                    s0 = server_cpu_seconds(self.postmaster)
                if any(p.poll() is not None for p in procs):
                    out.problems.append("a worker died before every job was done")
                    break
                if time.monotonic() > deadline:
                    out.notes.append(
                        f"stopped after {self.time_limit:.0f}s: the rate is of what ran"
                    )
                    break
                time.sleep(0.02)
        out.stopped_at = time.time()
        s1 = server_cpu_seconds(self.postmaster)
        time.sleep(0.5)  # let buffered completion writes land
        out.server_cpu = (s1 - s0) if s0 is not None and s1 is not None else 0.0

    @staticmethod
    def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _collect(self, tmp: Path, out: Outcome) -> tuple[list[Row], float]:
        rows: list[Row] = []
        cpu = 0.0
        for p in range(self.processes):
            path = tmp / f"rec-{p}.json"
            if not path.exists():
                log = (tmp / f"out-{p}.log").read_text(errors="replace")[-500:]
                out.failure(f"worker {p} left no record: {log}")
                continue
            data = json.loads(path.read_text())
            rows += [tuple(r) for r in data["rows"]]  # type: ignore[misc]
            if data["cpu"]:
                cpu += data["cpu"][1] - data["cpu"][0]
        return rows, cpu

    def _metrics(self, rows: list[Row], cpu: float, out: Outcome) -> dict[str, Any]:
        """The rate: all jobs over the first start to the last end; a drain stopped at
        its limit, the jobs done by then (the system's own count) over its time."""
        n = self.shape.jobs
        finished = out.done >= n and not out.timed_out
        ordered = self.system not in PEERS or not self.shape.unordered
        problems, again = verify(rows, n if finished else None, ordered, lost=bool(out.told))
        out.problems += problems
        for what in again:
            out.failure(f"after the refusals: {what}")
        if not rows:
            return {"jobs": n, "jobs_per_s": 0.0, "warnings": out.notes, "problems": out.problems}
        first = min(r[3] for r in rows)
        elapsed = (max(r[4] for r in rows) if finished else out.stopped_at) - first
        ran = len({r[0] for r in rows})
        return {
            "jobs": n,
            "ran": ran,
            "done": out.done,
            "finished": finished,
            "seconds": round(elapsed, 3),
            "jobs_per_s": round((n if finished else out.done) / elapsed, 1) if elapsed > 0 else 0.0,
            # the workers' CPU over the jobs in their records; the server's over all done
            "worker_cpu_us_per_job": round(cpu / ran * 1e6, 1),
            "pg_cpu_us_per_job": round(out.server_cpu / (out.done or ran) * 1e6, 1),
            "too_many_clients": out.told,
            "warnings": out.notes,
            "problems": out.problems,
        }


def verify(
    rows: list[Row], n: int | None, ordered: bool = True, lost: bool = False
) -> tuple[list[str], list[str]]:
    """Each job at most once (exactly once when `n` is given); `ordered`: per key in
    enqueue order and never overlapping (a peer run without ordering promises
    neither, so only the once is checked). `lost`: connections were refused, so a job
    may have run again (its outcome not written): that, and a count short of `n`,
    come back second, as part of the failure; order and overlap are checked all the
    same. Returns (problems, what the refusals explain)."""
    problems: list[str] = []
    again = [] if lost else problems
    ids = [r[0] for r in rows]
    if len(ids) != len(set(ids)):
        again.append(f"{len(ids) - len(set(ids))} jobs ran more than once")
    if n is not None and len(set(ids)) != n:
        again.append(f"{len(set(ids))} of {n} jobs ran")
    if not ordered:
        return problems, again if lost else []
    by_key: dict[int, list[tuple[float, float, int, int]]] = defaultdict(list)
    for job_id, key, i, t0, t1 in rows:
        by_key[key].append((t0, t1, i, job_id))
    bad = []
    for key, items in by_key.items():
        items.sort()
        for prev, cur in itertools.pairwise(items):
            rerun = lost and cur[3] == prev[3]  # the same job again, after its start
            if (cur[2] <= prev[2] and not rerun) or cur[0] < prev[1]:
                bad.append((key, prev[2], cur[2]))
    if bad:
        problems.append(f"{len(bad)} out-of-order or overlapping runs within a key: {bad[:5]}")
    return problems, again if lost else []
