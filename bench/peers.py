"""Peers on the same workloads: procrastinate (ordering with `lock=`) and PgQueuer (one
entrypoint per key with concurrency_limit=1, which PgQueuer enforces in SQL across
workers). Optional: `pip install procrastinate pgqueuer` (see docs/performance.md).

Both get the same no-op action, the same verification (each job exactly once; per key
in enqueue order, never overlapping, from the actions' own records) and the same
number of worker processes. Differences, stated rather than hidden:
- the peers' actions are `async def` (their recommended path; our no-op is sync);
- jobs are enqueued before the workers start, and the window runs from the first
  action start to the last action end (the peers' completion writes are not all
  timestamped), which favours the peers by the first claim's latency;
- PgQueuer deletes a job when it finishes (its log is buffered); procrastinate keeps it;
- both poll every 50 ms (see POLL), not their defaults.

Also the worker program: `python bench/peers.py worker procrastinate|pgqueuer ...`."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
# Neither peer wakes a worker when a key's next job becomes runnable (the previous one
# finished): they find it by polling. With their defaults (procrastinate polls every
# 5 s, PgQueuer waits 30 s for a notification) an ordered drain runs at a few jobs a
# second, so both poll every 50 ms here: their best case, at the price of idle polling.
POLL = 0.05
# A peer that has not drained a set by then is stopped; its rate is of what it ran.
PEER_TIME_LIMIT = 60.0


class Record:
    """What a peer worker ran: job id, key, position in the key, start, end."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, float, float]] = []
        self.lock = threading.Lock()

    def add(self, job_id: int, key: int, i: int, t0: float) -> None:
        with self.lock:
            self.rows.append((job_id, key, i, t0, time.time()))

    def dump(self, path: str) -> None:
        with self.lock:
            Path(path).write_text(json.dumps(self.rows))


REC = Record()


# -- worker programs -----------------------------------------------------------------


def procrastinate_app(dsn: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop", pass_context=True)
    async def noop(context: Any, q: int, i: int) -> None:
        REC.add(context.job.id, q, i, time.time())

    return app


def run_procrastinate(dsn: str, concurrency: int) -> None:
    app = procrastinate_app(dsn)
    app.run_worker(
        concurrency=concurrency,
        wait=True,
        install_signal_handlers=True,
        fetch_job_polling_interval=POLL,
    )


def run_pgqueuer(dsn: str, concurrency: int, keys: int) -> None:
    import psycopg
    from pgqueuer import PgQueuer, PsycopgDriver

    async def main() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        pgq = PgQueuer(PsycopgDriver(conn))
        for k in range(keys):

            def register(key: int) -> None:
                @pgq.entrypoint(f"k{key:05d}", concurrency_limit=1)
                async def handler(job: Any) -> None:
                    REC.add(int(job.id), key, int(job.payload or b"0"), time.time())

            register(k)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, pgq.shutdown.set)
        await pgq.qm.run(batch_size=concurrency, dequeue_timeout=timedelta(seconds=POLL))
        await conn.close()

    asyncio.run(main())


def worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("peer", choices=["procrastinate", "pgqueuer"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--keys", type=int, default=1)
    parser.add_argument("--record", required=True)
    args = parser.parse_args(argv)
    try:
        if args.peer == "procrastinate":
            run_procrastinate(args.dsn, args.concurrency)
        else:
            run_pgqueuer(args.dsn, args.concurrency, args.keys)
    finally:
        REC.dump(args.record)


# -- driver --------------------------------------------------------------------------


def available(peer: str) -> bool:
    try:
        __import__(peer)
    except ImportError:
        return False
    return True


def _reset(peer: str, dsn: str) -> None:
    import psycopg

    if peer == "procrastinate":
        with psycopg.connect(dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if exists is None or exists[0] is None:
            app = procrastinate_app(dsn)
            with app.open():
                app.schema_manager.apply_schema()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE procrastinate_jobs CASCADE")
    else:
        from pgqueuer import PsycopgDriver, Queries

        async def install() -> None:
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            cur = await conn.execute("SELECT to_regclass('pgqueuer')")
            row = await cur.fetchone()
            if row is None or row[0] is None:
                await Queries(PsycopgDriver(conn)).install()
            await conn.execute("TRUNCATE pgqueuer, pgqueuer_log")
            await conn.close()

        asyncio.run(install())


def _enqueue(peer: str, dsn: str, keys: int, per_key: int) -> None:
    if peer == "procrastinate":
        app = procrastinate_app(dsn)
        with app.open():
            task = app.tasks["noop"]
            for k in range(keys):
                task.configure(lock=f"k{k:05d}").batch_defer(
                    *({"q": k, "i": i} for i in range(per_key))
                )
        return
    import psycopg
    from pgqueuer import PsycopgDriver, Queries

    async def enqueue() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        queries = Queries(PsycopgDriver(conn))
        for k in range(keys):
            await queries.enqueue(
                [f"k{k:05d}"] * per_key,
                [str(i).encode() for i in range(per_key)],
                [0] * per_key,
            )
        await conn.close()

    asyncio.run(enqueue())


def _remaining(peer: str, dsn: str) -> int:
    import psycopg

    query = (
        "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        if peer == "procrastinate"
        else "SELECT count(*) FROM pgqueuer"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else -1


def drain(ctx: Any, peer: str, keys: int, per_key: int, processes: int) -> dict[str, Any]:
    if not available(peer):
        return {"skipped": f"{peer} not installed", "problems": []}
    dsn = ctx.db.dsn
    n = keys * per_key
    _reset(peer, dsn)
    _enqueue(peer, dsn, keys, per_key)
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{peer}-"))
    procs = []
    problems: list[str] = []
    for p in range(processes):
        cmd = [sys.executable, str(ROOT / "bench" / "peers.py"), "worker", peer, "--dsn", dsn]
        cmd += ["--concurrency", str(ctx.concurrency), "--keys", str(keys)]
        cmd += ["--record", str(tmp / f"rec-{p}.json")]
        out = open(tmp / f"out-{p}.log", "wb")  # noqa: SIM115 (closed by the child)
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT))
        out.close()
    deadline = time.monotonic() + PEER_TIME_LIMIT
    notes: list[str] = []
    try:
        while _remaining(peer, dsn) > 0:
            if any(p.poll() is not None for p in procs):
                problems.append("a worker died before every job was done")
                break
            if time.monotonic() > deadline:
                notes.append(f"stopped after {PEER_TIME_LIMIT:.0f}s: the rate is of what ran")
                break
            time.sleep(0.05)
        time.sleep(0.5)  # let buffered completion writes land
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    rows: list[tuple[int, int, int, float, float]] = []
    for p in range(processes):
        path = tmp / f"rec-{p}.json"
        if path.exists():
            rows += [tuple(r) for r in json.loads(path.read_text())]
        else:
            problems.append(
                f"worker {p} left no record: {(tmp / f'out-{p}.log').read_text()[-500:]}"
            )
    problems += _verify(rows, n if not notes else None)
    if not rows:
        return {"jobs": n, "jobs_per_s": 0.0, "warnings": notes, "problems": problems}
    start = min(r[3] for r in rows)
    end = max(r[4] for r in rows)
    return {
        "jobs": n,
        "seconds": round(end - start, 3),
        "ran": len(rows),
        "jobs_per_s": round(len(rows) / (end - start), 1) if end > start else 0.0,
        "warnings": notes,
        "problems": problems,
    }


def _verify(rows: list[tuple[int, int, int, float, float]], n: int | None) -> list[str]:
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


@dataclass(frozen=True)
class PeerCase:
    name: str
    label: str
    fn: Callable[[Any], dict[str, Any]]
    processes: int


def cases(sizes: Any) -> list[PeerCase]:
    out = []
    shapes = [("ordered", *sizes.ordered), ("many_queues", *sizes.many_queues)]
    shapes.append(("one_queue", 1, sizes.one_queue))
    for peer in ("procrastinate", "pgqueuer"):
        for shape, keys, per in shapes:
            for processes in (1, 2) if shape != "one_queue" else (1,):
                out.append(
                    PeerCase(
                        f"peers_{peer}",
                        f"{peer}: {shape} {keys:,} x {per:,}",
                        partial(drain, peer=peer, keys=keys, per_key=per, processes=processes),
                        processes,
                    )
                )
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_main(sys.argv[2:])
    else:
        print(__doc__)
