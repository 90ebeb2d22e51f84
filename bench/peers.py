"""Side by side: queuetopia (an `async def` action and a plain one), PgQueuer and
procrastinate on the same server, in the same run, on the same workloads. Optional:
`pip install 'queuetopia[bench]'` (see docs/performance.md).

Each peer runs as its own docs recommend, nothing tuned down or up:
- PgQueuer: its asyncpg driver (what `pgq run` uses), `QueueManager.run(batch_size=10)`
  with its default dequeue timeout; ordered work is one entrypoint per key with
  `concurrency_limit=1`, which PgQueuer enforces in SQL across workers.
- procrastinate: its psycopg connector, `run_worker(concurrency=10)` with its default
  polling and LISTEN/NOTIFY; ordered work is `lock=` per key.
- queuetopia: `topia.worker(concurrency=10)` with the library defaults (poll 60 s).

The same body for every system: record the start, yield once to the event loop
(`await asyncio.sleep(0)`; the plain queuetopia action has no loop to yield to), record
the end. Jobs are enqueued before the workers start, for every system; the window runs
from the first start to the last end. CPU per job: each worker process records its own
process time at its first start and its last end; the server's is sampled from the
postmaster's children from the first finished job to the last. Logging is not
configured for any of them (library defaults), so no system pays for log output.

Every run is verified the same way: each job exactly once, per key in enqueue order and
never overlapping, from the actions' own records.

Also the worker program: `python bench/peers.py worker SYSTEM --dsn DSN ...`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench.procs import server_cpu_seconds
from queuetopia import Job, Queuetopia  # module level: the actions' hints resolve here

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("queuetopia_async", "queuetopia_plain", "pgqueuer", "procrastinate")
PEERS = ("pgqueuer", "procrastinate")
SCOPE = "sidebyside"
# A system that has not drained a set by then is stopped; its rate is of what it ran.
TIME_LIMIT = 60.0
Row = tuple[int, int, int, float, float]


class Record:
    """What one worker process ran (job id, key, position, start, end) and its own CPU
    time at its first start and its last end."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.cpu: list[float] = []
        self.lock = threading.Lock()

    def start(self) -> float:
        if not self.cpu:
            with self.lock:
                if not self.cpu:
                    self.cpu = [time.process_time(), 0.0]
        return time.time()

    def add(self, job_id: int, key: int, i: int, t0: float) -> None:
        t1 = time.time()
        with self.lock:
            self.rows.append((job_id, key, i, t0, t1))
            self.cpu[1] = time.process_time()

    def dump(self, path: str) -> None:
        with self.lock:
            Path(path).write_text(json.dumps({"rows": self.rows, "cpu": self.cpu}))


REC = Record()


def key_name(k: int) -> str:
    return f"k{k:05d}"


# -- worker programs -----------------------------------------------------------------


def queuetopia_app(dsn: str, flavour: str) -> Queuetopia:
    topia = Queuetopia(dsn=dsn, scope=SCOPE)
    if flavour == "queuetopia_async":

        @topia.action("noop")
        async def noop_async(job: Job, q: int, i: int) -> None:
            t0 = REC.start()
            await asyncio.sleep(0)
            REC.add(job.id, q, i, t0)

    else:

        @topia.action("noop")
        def noop(job: Job, q: int, i: int) -> None:
            REC.add(job.id, q, i, REC.start())

    return topia


def run_queuetopia(dsn: str, concurrency: int, flavour: str) -> None:
    topia = queuetopia_app(dsn, flavour)
    topia.worker(concurrency=concurrency).run()  # SIGTERM stops it gracefully
    topia.close()


def procrastinate_app(dsn: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop", pass_context=True)
    async def noop(context: Any, q: int, i: int) -> None:
        t0 = REC.start()
        await asyncio.sleep(0)
        REC.add(context.job.id, q, i, t0)

    return app


def run_procrastinate(dsn: str, concurrency: int) -> None:
    app = procrastinate_app(dsn)
    app.run_worker(concurrency=concurrency, wait=True, install_signal_handlers=True)


def run_pgqueuer(dsn: str, concurrency: int, keys: int) -> None:
    from pgqueuer import PgQueuer

    async def main() -> None:
        conn = await asyncpg_connect(dsn)
        pgq = PgQueuer.from_asyncpg_connection(conn)
        for k in range(keys):

            def register(key: int) -> None:
                @pgq.entrypoint(key_name(key), concurrency_limit=1)
                async def handler(job: Any) -> None:
                    t0 = REC.start()
                    await asyncio.sleep(0)
                    REC.add(int(job.id), key, int(job.payload or b"0"), t0)

            register(k)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, pgq.shutdown.set)
        await pgq.qm.run(batch_size=concurrency)
        await conn.close()

    asyncio.run(main())


def worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--keys", type=int, default=1)
    parser.add_argument("--record", required=True)
    args = parser.parse_args(argv)
    try:
        if args.system == "procrastinate":
            run_procrastinate(args.dsn, args.concurrency)
        elif args.system == "pgqueuer":
            run_pgqueuer(args.dsn, args.concurrency, args.keys)
        else:
            run_queuetopia(args.dsn, args.concurrency, args.system)
    finally:
        REC.dump(args.record)


# -- set-up and enqueueing, per system -----------------------------------------------


def available(system: str) -> bool:
    module = {"pgqueuer": "asyncpg", "procrastinate": "procrastinate"}.get(system)
    for name in filter(None, [module, system if system in PEERS else None]):
        try:
            __import__(name)
        except ImportError:
            return False
    return True


async def asyncpg_connect(dsn: str) -> Any:
    """asyncpg takes URIs only: pass the parts of a libpq DSN (keywords or URI)."""
    import asyncpg
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(dsn)
    return await asyncpg.connect(
        host=parts.get("host"),
        port=int(parts["port"]) if parts.get("port") else None,
        user=parts.get("user"),
        password=parts.get("password") or None,
        database=parts.get("dbname"),
    )


@contextlib.asynccontextmanager
async def pgqueuer_queries(dsn: str) -> AsyncIterator[tuple[Any, Any]]:
    """PgQueuer's queries on an asyncpg connection of their own, and the connection."""
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg_connect(dsn)
    try:
        yield Queries(AsyncpgDriver(conn)), conn
    finally:
        await conn.close()


def _psycopg(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def reset(system: str, dsn: str) -> None:
    """Install the system's schema if missing and empty its tables."""
    if system == "procrastinate":
        with _psycopg(dsn) as conn:
            exists = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if exists is None or exists[0] is None:
            app = procrastinate_app(dsn)
            with app.open():
                app.schema_manager.apply_schema()
        with _psycopg(dsn) as conn:
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

        with _psycopg(dsn) as conn:
            conn.execute("TRUNCATE " + ", ".join(TABLES))
    with _psycopg(dsn) as conn:
        conn.execute("CHECKPOINT")


def enqueue_lines(system: str, dsn: str, keys: int, per_key: int) -> None:
    """Enqueue keys x per_key jobs, one batch per key, each system its documented way."""
    if system == "procrastinate":
        app = procrastinate_app(dsn)
        with app.open():
            task = app.tasks["noop"]
            for k in range(keys):
                task.configure(lock=key_name(k)).batch_defer(
                    *({"q": k, "i": i} for i in range(per_key))
                )
    elif system == "pgqueuer":

        async def enqueue() -> None:
            async with pgqueuer_queries(dsn) as (queries, _):
                for k in range(keys):
                    payloads: list[bytes | None] = [str(i).encode() for i in range(per_key)]
                    await queries.enqueue([key_name(k)] * per_key, payloads, [0] * per_key)

        asyncio.run(enqueue())
    else:
        with queuetopia_app(dsn, system) as topia:
            noop = topia.actions["noop"]
            for k in range(keys):
                noop.delay_many(key_name(k), [{"q": k, "i": i} for i in range(per_key)])


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


# -- one drain ------------------------------------------------------------------------


@dataclass
class Drain:
    system: str
    dsn: str
    keys: int
    per_key: int
    processes: int
    concurrency: int
    postmaster: int | None

    def run(self) -> dict[str, Any]:
        if not available(self.system):
            return {"skipped": f"{self.system} not installed", "problems": []}
        reset(self.system, self.dsn)
        enqueue_lines(self.system, self.dsn, self.keys, self.per_key)
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-{self.system}-"))
        procs = [self._spawn(tmp, p) for p in range(self.processes)]
        notes, problems, server_cpu = self._wait(procs)
        self._stop(procs)
        rows, cpu = self._collect(tmp, problems)
        return self._metrics(rows, cpu, server_cpu, notes, problems)

    def _spawn(self, tmp: Path, p: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, str(ROOT / "bench" / "peers.py"), "worker", self.system]
        cmd += ["--dsn", self.dsn, "--concurrency", str(self.concurrency)]
        cmd += ["--keys", str(self.keys), "--record", str(tmp / f"rec-{p}.json")]
        with open(tmp / f"out-{p}.log", "wb") as out:
            return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def _wait(self, procs: list[subprocess.Popen[bytes]]) -> tuple[list[str], list[str], float]:
        """Poll until every job is done; the server's CPU from the first finished job."""
        n = self.keys * self.per_key
        notes: list[str] = []
        problems: list[str] = []
        s0: float | None = None
        deadline = time.monotonic() + TIME_LIMIT
        with _psycopg(self.dsn) as conn:
            while (left := remaining(self.system, conn)) > 0:
                if s0 is None and left < n:
                    s0 = server_cpu_seconds(self.postmaster)
                if any(p.poll() is not None for p in procs):
                    problems.append("a worker died before every job was done")
                    break
                if time.monotonic() > deadline:
                    notes.append(f"stopped after {TIME_LIMIT:.0f}s: the rate is of what ran")
                    break
                time.sleep(0.02)
        s1 = server_cpu_seconds(self.postmaster)
        time.sleep(0.5)  # let buffered completion writes land
        return notes, problems, (s1 - s0) if s0 is not None and s1 is not None else 0.0

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

    def _collect(self, tmp: Path, problems: list[str]) -> tuple[list[Row], float]:
        rows: list[Row] = []
        cpu = 0.0
        for p in range(self.processes):
            path = tmp / f"rec-{p}.json"
            if not path.exists():
                log = (tmp / f"out-{p}.log").read_text(errors="replace")[-500:]
                problems.append(f"worker {p} left no record: {log}")
                continue
            data = json.loads(path.read_text())
            rows += [tuple(r) for r in data["rows"]]  # type: ignore[misc]
            if data["cpu"]:
                cpu += data["cpu"][1] - data["cpu"][0]
        return rows, cpu

    def _metrics(
        self, rows: list[Row], cpu: float, server_cpu: float, notes: list[str], problems: list[str]
    ) -> dict[str, Any]:
        n = self.keys * self.per_key
        problems += verify(rows, n if not notes else None)
        if not rows:
            return {"jobs": n, "jobs_per_s": 0.0, "warnings": notes, "problems": problems}
        elapsed = max(r[4] for r in rows) - min(r[3] for r in rows)
        return {
            "jobs": n,
            "ran": len(rows),
            "seconds": round(elapsed, 3),
            "jobs_per_s": round(len(rows) / elapsed, 1) if elapsed > 0 else 0.0,
            "worker_cpu_us_per_job": round(cpu / len(rows) * 1e6, 1),
            "pg_cpu_us_per_job": round(server_cpu / len(rows) * 1e6, 1),
            "warnings": notes,
            "problems": problems,
        }


def verify(rows: list[Row], n: int | None) -> list[str]:
    """Each job at most once (exactly once when `n` is given); per key in enqueue order
    and never overlapping."""
    problems = []
    ids = [r[0] for r in rows]
    if len(ids) != len(set(ids)):
        problems.append(f"{len(ids) - len(set(ids))} jobs ran more than once")
    if n is not None and len(set(ids)) != n:
        problems.append(f"{len(set(ids))} of {n} jobs ran")
    by_key: dict[int, list[tuple[float, float, int]]] = defaultdict(list)
    for _, key, i, t0, t1 in rows:
        by_key[key].append((t0, t1, i))
    bad = []
    for key, items in by_key.items():
        items.sort()
        for prev, cur in itertools.pairwise(items):
            if cur[2] <= prev[2] or cur[0] < prev[1]:
                bad.append((key, prev[2], cur[2]))
    if bad:
        problems.append(f"{len(bad)} out-of-order or overlapping runs within a key: {bad[:5]}")
    return problems


# -- enqueueing workloads -------------------------------------------------------------


def enqueue_single(system: str, dsn: str, n: int) -> dict[str, Any]:
    """n jobs over 100 keys, one job per transaction, from one producer."""
    reset(system, dsn)
    if system == "pgqueuer":

        async def go() -> float:
            async with pgqueuer_queries(dsn) as (queries, _):
                await queries.enqueue(key_name(0), b"-1")
                t0 = time.perf_counter()
                for i in range(n):
                    await queries.enqueue(key_name(i % 100), str(i).encode())
                return time.perf_counter() - t0

        took = asyncio.run(go())
    elif system == "procrastinate":

        async def go() -> float:
            app = procrastinate_app(dsn)
            async with app.open_async():
                task = app.tasks["noop"]
                await task.configure(lock=key_name(0)).defer_async(q=0, i=-1)
                t0 = time.perf_counter()
                for i in range(n):
                    await task.configure(lock=key_name(i % 100)).defer_async(q=i % 100, i=i)
                return time.perf_counter() - t0

        took = asyncio.run(go())
    else:
        with queuetopia_app(dsn, system) as topia:
            noop = topia.actions["noop"]
            noop.delay(key_name(0), q=0, i=-1)  # open the pool outside the timing
            t0 = time.perf_counter()
            for i in range(n):
                noop.delay(key_name(i % 100), q=i % 100, i=i)
            took = time.perf_counter() - t0
    return {"jobs": n, "jobs_per_s": round(n / took, 1), "problems": []}


def enqueue_fanout(system: str, dsn: str, queues: int, calls: int) -> dict[str, Any]:
    """`calls` calls, each enqueueing one job for each of `queues` queues (keys)."""
    reset(system, dsn)

    def items(c: int) -> list[tuple[int, int]]:
        return [(k, c) for k in range(queues)]

    if system == "pgqueuer":

        async def go() -> float:
            async with pgqueuer_queries(dsn) as (queries, _):
                t0 = time.perf_counter()
                for c in range(calls):
                    its = items(c)
                    payloads: list[bytes | None] = [str(i).encode() for _, i in its]
                    entrypoints = [key_name(k) for k, _ in its]
                    await queries.enqueue(entrypoints, payloads, [0] * len(its))
                return time.perf_counter() - t0

        took = asyncio.run(go())
    elif system == "procrastinate":

        async def go() -> float:
            app = procrastinate_app(dsn)
            async with app.open_async():
                task = app.tasks["noop"]
                t0 = time.perf_counter()
                for c in range(calls):
                    jobs = [
                        task.configure(lock=key_name(k)).make_new_job(q=k, i=i) for k, i in items(c)
                    ]
                    await app.job_manager.batch_defer_jobs_async(jobs)
                return time.perf_counter() - t0

        took = asyncio.run(go())
    else:
        took = _queuetopia_fanout(system, dsn, calls, items)
    jobs = queues * calls
    return {"jobs": jobs, "jobs_per_s": round(jobs / took, 1), "problems": []}


def _queuetopia_fanout(
    system: str, dsn: str, calls: int, items: Callable[[int], list[tuple[int, int]]]
) -> float:
    import queuetopia

    with queuetopia_app(dsn, system) as topia:
        noop = topia.actions["noop"]
        noop.delay(key_name(0), q=0, i=-1)
        bulk = getattr(topia, "enqueue_many", None)
        request = getattr(queuetopia, "JobRequest", None)
        t0 = time.perf_counter()
        for c in range(calls):
            its = items(c)
            if bulk is not None and request is not None:
                bulk([request(key_name(k), "noop", {"q": k, "i": i}) for k, i in its])
            else:  # an engine without the many-queue call: one call per queue
                for k, i in its:
                    noop.delay(key_name(k), q=k, i=i)
        return time.perf_counter() - t0


# -- cases for bench/run.py --------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    label: str
    processes: int
    measure: Callable[[str, Any], dict[str, Any]]  # (system, ctx) -> metrics
    # (metric, what queuetopia must reach as a multiple of the best peer's)
    target: tuple[str, float] | None = None


def workloads(sizes: Any) -> list[Workload]:
    oq, oper = sizes.ordered
    mq, mper = sizes.many_queues
    single = sizes.enqueue_single
    fanout_calls = max(sizes.enqueue_batches // 2, 2)

    def drain(keys: int, per: int, processes: int) -> Callable[[str, Any], dict[str, Any]]:
        def measure(system: str, ctx: Any) -> dict[str, Any]:
            run = Drain(
                system, ctx.db.dsn, keys, per, processes, ctx.concurrency, ctx.db.postmaster
            )
            return run.run()

        return measure

    out = [
        Workload(
            "enqueue_single",
            f"enqueue, one job per transaction ({single:,} jobs)",
            0,
            lambda s, ctx: enqueue_single(s, ctx.db.dsn, single),
            ("jobs_per_s", 2.0),
        ),
        Workload(
            "enqueue_fanout",
            f"enqueue 1,000 jobs for 1,000 queues in one call (x {fanout_calls})",
            0,
            lambda s, ctx: enqueue_fanout(s, ctx.db.dsn, 1000, fanout_calls),
            ("jobs_per_s", 1.5),
        ),
    ]
    for processes in (1, 2):
        target = ("jobs_per_s", 2.0) if processes == 2 else None
        out.append(
            Workload("ordered", f"ordered {oq:,} x {oper:,}", processes, drain(oq, oper, processes),
                     target)
        )  # fmt: skip
    for processes in (1, 2):
        target = ("jobs_per_s", 1.5) if processes == 2 else None
        out.append(
            Workload(
                "many_queues", f"{mq * mper:,} jobs on {mq:,} queues", processes,
                drain(mq, mper, processes), target,
            )
        )  # fmt: skip
    one = sizes.one_queue
    out.append(Workload("one_queue", f"one queue 1 x {one:,}", 1, drain(1, one, 1)))
    return out


def side_by_side(ctx: Any, workload: Workload) -> dict[str, Any]:
    """One run of `workload` for every system in turn; metrics keyed `system.metric`,
    with queuetopia's ratios to the best peer computed within the run."""
    out: dict[str, Any] = {"problems": [], "warnings": []}
    for system in SYSTEMS:
        metrics = workload.measure(system, ctx)
        out["problems"] += [f"{system}: {p}" for p in metrics.pop("problems", [])]
        out["warnings"] += [f"{system}: {p}" for p in metrics.pop("warnings", [])]
        for key, value in metrics.items():
            out[f"{system}.{key}"] = value
    best = max((out.get(f"{p}.jobs_per_s") or 0.0) for p in PEERS)
    for system in ("queuetopia_async", "queuetopia_plain"):
        rate = out.get(f"{system}.jobs_per_s") or 0.0
        out[f"{system}.x_best_peer"] = round(rate / best, 2) if best else None
    if workload.name == "one_queue":
        from bench import workloads as w

        floor = w.floor(ctx, clients=1)
        out["floor.update_commits_per_s"] = floor.get("update_commits_per_s")
        for system in ("queuetopia_async", "queuetopia_plain"):
            rate = out.get(f"{system}.jobs_per_s") or 0.0
            commits = floor.get("update_commits_per_s") or 0.0
            out[f"{system}.x_floor"] = round(rate / commits, 2) if commits else None
    return out


def cases(sizes: Any) -> list[tuple[Workload, Callable[[Any], dict[str, Any]]]]:
    return [(wl, partial(side_by_side, workload=wl)) for wl in workloads(sizes)]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_main(sys.argv[2:])
    else:
        print(__doc__)
