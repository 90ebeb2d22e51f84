"""The side-by-side worker programs, one per system, and the connections they share
with the set-up code: `python bench/peers.py worker SYSTEM --dsn DSN ...` runs one.

Every system runs the same body: record the start, wait (`--sleep` seconds: `await
asyncio.sleep`, or `time.sleep` in the plain queuetopia action; 0 means yield once to
the event loop, and the plain action has no loop to yield to), record the end. PgQueuer
jobs carry "key:position" as their payload."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from queuetopia import Job, Queuetopia  # module level: the actions' hints resolve here

SYSTEMS = ("queuetopia_async", "queuetopia_plain", "pgqueuer", "procrastinate")
PEERS = ("pgqueuer", "procrastinate")
SCOPE = "sidebyside"
UNORDERED = "noop"  # PgQueuer's one entrypoint when the keys are not ordered
Row = tuple[int, int, int, float, float]


class Record:
    """What one worker process ran (job id, key, position, start, end) and its own CPU
    time at its first start and its last end."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.cpu: list[float] = []
        self.lock = threading.Lock()
        self.sleep = 0.0  # seconds each job waits (--sleep)

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


def payload(k: int, i: int) -> bytes:
    return f"{k}:{i}".encode()


def parse_payload(data: bytes | None) -> tuple[int, int]:
    k, _, i = (data or b"0:0").decode().partition(":")
    return int(k), int(i)


# -- connections ---------------------------------------------------------------------


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


def available(system: str) -> bool:
    module = {"pgqueuer": "asyncpg", "procrastinate": "procrastinate"}.get(system)
    for name in filter(None, [module, system if system in PEERS else None]):
        try:
            __import__(name)
        except ImportError:
            return False
    return True


# -- worker programs -----------------------------------------------------------------


def queuetopia_app(dsn: str, flavour: str) -> Queuetopia:
    topia = Queuetopia(dsn=dsn, scope=SCOPE)
    if flavour == "queuetopia_async":

        @topia.action("noop")
        async def noop_async(job: Job, q: int, i: int) -> None:
            t0 = REC.start()
            await asyncio.sleep(REC.sleep)
            REC.add(job.id, q, i, t0)

    else:

        @topia.action("noop")
        def noop(job: Job, q: int, i: int) -> None:
            t0 = REC.start()
            if REC.sleep:
                time.sleep(REC.sleep)
            REC.add(job.id, q, i, t0)

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
        await asyncio.sleep(REC.sleep)
        REC.add(context.job.id, q, i, t0)

    return app


def run_procrastinate(dsn: str, concurrency: int) -> None:
    app = procrastinate_app(dsn)
    app.run_worker(concurrency=concurrency, wait=True, install_signal_handlers=True)


def pgqueuer_run_options(concurrency: int) -> dict[str, int]:
    """No-op drains: `batch_size=concurrency`, as before. Jobs that wait (I/O): its
    performance guide's global cap, `max_concurrent_tasks=concurrency`, so a worker
    holds no more jobs than its concurrency, with the largest batch the cap allows
    (at most half of it, which PgQueuer enforces; the guide: larger batches for jobs
    under a second)."""
    if not REC.sleep:
        return {"batch_size": concurrency}
    return {"batch_size": max(1, concurrency // 2), "max_concurrent_tasks": concurrency}


def run_pgqueuer(dsn: str, concurrency: int, keys: int, unordered: bool) -> None:
    """Ordered: one entrypoint per key with `concurrency_limit=1` (enforced in SQL
    across workers). Unordered: one plain entrypoint for every job."""
    from pgqueuer import PgQueuer

    async def handle(job: Any) -> None:
        t0 = REC.start()
        await asyncio.sleep(REC.sleep)
        key, i = parse_payload(job.payload)
        REC.add(int(job.id), key, i, t0)

    async def main() -> None:
        conn = await asyncpg_connect(dsn)
        pgq = PgQueuer.from_asyncpg_connection(conn)
        if unordered:
            pgq.entrypoint(UNORDERED)(handle)
        for k in range(0 if unordered else keys):
            pgq.entrypoint(key_name(k), concurrency_limit=1)(handle)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, pgq.shutdown.set)
        await pgq.qm.run(**pgqueuer_run_options(concurrency))  # type: ignore[arg-type]
        await conn.close()

    asyncio.run(main())


def worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--keys", type=int, default=1)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--unordered", action="store_true")
    parser.add_argument("--record", required=True)
    args = parser.parse_args(argv)
    REC.sleep = args.sleep
    try:
        if args.system == "procrastinate":
            run_procrastinate(args.dsn, args.concurrency)
        elif args.system == "pgqueuer":
            run_pgqueuer(args.dsn, args.concurrency, args.keys, args.unordered)
        else:
            run_queuetopia(args.dsn, args.concurrency, args.system)
    finally:
        REC.dump(args.record)
