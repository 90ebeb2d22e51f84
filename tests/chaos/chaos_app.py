"""The topia of the chaos suite's worker processes: `tests.chaos.chaos_app:topia`.

Configured from the environment: the scope (QT_CHAOS_SCOPE), the lease TTL
(QT_CHAOS_LOCK_TTL) and the pool size (QT_CHAOS_POOL). The worker's own DSN comes from
the command line (`--dsn`, perhaps through the fault-injecting proxy); the execution
log is written through a direct connection to the database (QT_CHAOS_LOG_DSN), so a
network fault between a worker and the database never hides what the action did.

Each execution writes one row of `chaos_exec` when it starts and completes it when it
ends: which job, which attempt, which process, when (the host's clock, which is the
database's: a start as the action asked to log it, an end as the database wrote it)
and how it ended (`ok`, `interrupted` by the worker, `error`; no end at all means the
process died).
A log write that fails (the database restarting) is retried until it succeeds, and is
idempotent, so a lost reply never writes a row twice.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import queue
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from queuetopia import Job, Queuetopia

topia = Queuetopia(
    scope=os.environ.get("QT_CHAOS_SCOPE", "chaos"),
    lock_ttl=float(os.environ.get("QT_CHAOS_LOCK_TTL", "3")),
    pool_size=int(os.environ.get("QT_CHAOS_POOL", "2")),
    poll_interval=60.0,
    commit_timeout=float(os.environ.get("QT_CHAOS_COMMIT_TIMEOUT", "30")),
    # Behind PgBouncer (tests/chaos/test_pgbouncer.py): LISTEN straight to PostgreSQL.
    listen_dsn=os.environ.get("QT_CHAOS_LISTEN_DSN") or None,
    prepared_statements=os.environ.get("QT_CHAOS_PREPARED", "1") == "1",
)

# `kill -USR1 PID` prints every thread's stack to the worker's log, for diagnosis.
faulthandler.register(signal.SIGUSR1, all_threads=True)

LOG_DSN = os.environ.get("QT_CHAOS_LOG_DSN", "")
LOG_RETRY_FOR = 120.0

_local = threading.local()


def _log(
    statement: str,
    params: tuple[Any, ...],
    *,
    once: bool = False,
    defer: bool = False,
    stamp: bool = False,
) -> None:
    """Write to the log, retrying while the database is away. The last param of every
    statement is the time of the event, NULL for "now, on the database's clock"; with
    `stamp`, always the time this call was made (this host's clock, the database's:
    a start written as the process is killed may reach the log server after the
    kill is recorded, and dated by the server it would seem to start after its
    process died, its execution never ending).

    An interrupt the worker sends (a BaseException raised in this thread, once per
    attempt) must not wait for the database: the execution ends at once, as the
    worker expects of a cooperative action, and the write is left to the flusher,
    with the time it was asked for. So is every write while the flusher has a
    backlog (a start it holds must be written before its end), with `defer` every
    write (an interrupted action's end: not even one round trip to a database that
    may be slow), and with `once` a write that failed once (a failed action's end)."""
    at = datetime.now(UTC)
    if defer or _flusher.busy():
        _flusher.put(statement, (*params, at))
        return
    deadline = time.monotonic() + LOG_RETRY_FOR
    while True:
        try:
            try:
                _write(statement, (*params, at if stamp else None))
                return
            except psycopg.Error:
                _drop()
                if once:
                    _flusher.put(statement, (*params, at))
                    return
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        except psycopg.Error:
            raise
        except BaseException:  # the worker's interrupt
            _drop()  # it may have left the connection in the middle of a statement
            _flusher.put(statement, (*params, at))
            raise


class _Flusher:
    """Writes deferred log rows in order, retrying each until it succeeds."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def busy(self) -> bool:
        with self._lock:
            return self._pending > 0

    def put(self, statement: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="chaos-log")
                self._thread.start()
        self._queue.put((statement, params))

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while True:
            statement, params = self._queue.get()
            while True:
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(
                            LOG_DSN or topia.dsn, autocommit=True, connect_timeout=5
                        )
                    conn.execute(statement, params)
                    break
                except psycopg.Error:
                    if conn is not None:
                        conn.close()
                    conn = None
                    time.sleep(0.1)
            with self._lock:
                self._pending -= 1


_flusher = _Flusher()


def _write(statement: str, params: tuple[Any, ...]) -> None:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(
            LOG_DSN or topia.dsn, autocommit=True, connect_timeout=5
        )
    conn.execute(statement, params)


def _drop() -> None:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    _local.conn = None
    if conn is not None:
        conn.close()


def _started(exec_id: uuid.UUID, job: Job, n: int) -> None:
    error = (job.error or "").splitlines()[0][:200] if job.error else None
    _log(
        "INSERT INTO chaos_exec (exec_id, scope, job_id, queue, n, attempt, pid, node,"
        " prev_error, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " coalesce(%s::timestamptz, clock_timestamp()))"
        " ON CONFLICT (exec_id) DO NOTHING",
        (exec_id, topia.scope, job.id, job.queue, n, job.attempts, os.getpid(), job.attempted_by,
         error),
        stamp=True,
    )  # fmt: skip


def _ended(exec_id: uuid.UUID, outcome: str, *, once: bool = False) -> None:
    """Record the end; an interrupted execution's end is left to the flusher."""
    _log(
        "UPDATE chaos_exec SET outcome = e.outcome, ended_at = coalesce(e.at, clock_timestamp())"
        " FROM (SELECT %s::text AS outcome, %s::uuid AS id, %s::timestamptz AS at) AS e"
        " WHERE exec_id = e.id AND ended_at IS NULL",
        (outcome, exec_id),
        once=once,
        defer=outcome == "interrupted",
    )


def _outcome(exc: BaseException) -> str:
    return "interrupted" if type(exc).__name__ in ("Interrupted", "JobTimeout") else "error"


def _spin(seconds: float) -> None:
    """Pure-Python work that holds the GIL but for the interpreter's switches."""
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        for i in range(2000):
            total += i * i


def _sleep(seconds: float) -> None:
    """Sleep in short slices, so that the worker can interrupt the action promptly."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.01, max(deadline - time.monotonic(), 0)))


@topia.action("work", timeout=300.0, max_attempts=50, backoff=lambda job: 0.2)
def work(
    n: int,
    job: Job,
    sleep: float = 0.0,
    cpu: float = 0.0,
    first_sleep: float | None = None,
    first_block: float = 0.0,
) -> int:
    """Log the start, sleep and/or spin, log the end. `first_sleep` replaces `sleep` on
    the first attempt; `first_block` adds ONE `time.sleep` call to the first attempt:
    a long C call that no interrupt can cut short."""
    exec_id = uuid.uuid4()
    try:
        _started(exec_id, job, n)
        if first_block and job.attempts == 1:
            time.sleep(first_block)
        _sleep(first_sleep if first_sleep is not None and job.attempts == 1 else sleep)
        _spin(cpu)
    except BaseException as exc:
        _ended(exec_id, _outcome(exc), once=True)
        raise
    _ended(exec_id, "ok")
    return n


@topia.action("awork", timeout=300.0, max_attempts=50, backoff=lambda job: 0.2)
async def awork(n: int, job: Job, sleep: float = 0.0) -> int:
    """`work` as an `async def` action, on the worker's event loop. Its log writes
    block the loop for a round trip to the log server (a start must be written before
    its end, which a cancel leaves to the flusher)."""
    exec_id = uuid.uuid4()
    try:
        _started(exec_id, job, n)
        await asyncio.sleep(sleep)
    except BaseException:
        _ended(exec_id, "interrupted", once=True)  # cancelled: to the flusher
        raise
    _ended(exec_id, "ok")
    return n


@topia.action("poison", timeout=60.0, max_attempts=3, backoff=lambda job: 1.0)
def poison(n: int, job: Job) -> None:
    """Kill the worker process at the start of every attempt."""
    _started(uuid.uuid4(), job, n)
    os._exit(17)


@topia.action("spawn", timeout=120.0, max_attempts=50, backoff=lambda job: 0.2)
def spawn(n: int, job: Job, children: int, hold: float = 0.0) -> int:
    """Enqueue `children` jobs through the topia's (small) pool, holding a pooled
    connection for `hold` seconds first: actions that compete for the pool."""
    exec_id = uuid.uuid4()
    try:
        _started(exec_id, job, n)
        with topia.connection() as conn:
            conn.execute("SELECT pg_sleep(%s)", (hold,))
        for i in range(children):
            work.delay(f"{job.queue}.child{i}", n=n)
    except BaseException as exc:
        _ended(exec_id, _outcome(exc), once=True)
        raise
    _ended(exec_id, "ok")
    return n


def _count_hook(job: Job, error: BaseException) -> None:
    """on_failure of `flaky`: one row per call, so a test can count calls per attempt."""
    _log(
        "INSERT INTO chaos_hook (scope, job_id, attempt, pid, error, at)"
        " VALUES (%s, %s, %s, %s, %s, coalesce(%s::timestamptz, clock_timestamp()))",
        (topia.scope, job.id, job.attempts, os.getpid(), str(error)[:200]),
    )


@topia.action(
    "flaky",
    timeout=300.0,
    max_attempts=50,
    backoff=lambda job: float(job.params.get("backoff", 0.2)),
    on_failure=_count_hook,
)
def flaky(
    n: int, job: Job, sleep: float = 0.0, fail_attempts: int = 1, backoff: float = 0.2
) -> int:
    """Like `work`, but its first `fail_attempts` attempts raise after sleeping; its
    failure hook logs each call; its backoff is the param `backoff`."""
    exec_id = uuid.uuid4()
    try:
        _started(exec_id, job, n)
        _sleep(sleep)
        if job.attempts <= fail_attempts:
            raise RuntimeError(f"attempt {job.attempts} fails on purpose")
    except BaseException as exc:
        _ended(exec_id, _outcome(exc), once=True)
        raise
    _ended(exec_id, "ok")
    return n
