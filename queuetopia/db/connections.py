"""Connections: resolving the DSN and opening pools and dedicated connections."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import select
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeGuard, cast

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from ..errors import DatabaseUnavailable, QueuetopiaError
from . import queries
from .translate import Diagnose, connecting, schema_explained, translate_errors

DSN_ENV = "QUEUETOPIA_DSN"

# Dead peers are noticed by TCP keepalives within seconds, not hours.
CONNECT_KWARGS: dict[str, Any] = {
    "application_name": "queuetopia",
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    # Data unacknowledged this long (a half-open connection) breaks the connection.
    "tcp_user_timeout": 10_000,
}


def is_sync_connection(value: object) -> TypeGuard[psycopg.Connection[Any]]:
    """Is `value` a psycopg 3 (sync) connection, as `connection=` arguments take?"""
    return isinstance(value, psycopg.Connection)


def is_async_connection(value: object) -> TypeGuard[psycopg.AsyncConnection[Any]]:
    return isinstance(value, psycopg.AsyncConnection)


def conninfo(**params: Any) -> str:
    """A libpq connection string from keyword parameters (None values left out)."""
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})


def resolve_dsn(dsn: str | None) -> str:
    """The DSN given, else $QUEUETOPIA_DSN, else the embedded server's."""
    if dsn:
        return dsn
    if os.environ.get(DSN_ENV):
        return os.environ[DSN_ENV]
    from ..embedded import embedded_dsn

    return embedded_dsn()


class ReplyTimeout(psycopg.OperationalError):
    """No reply within `commit_timeout`: the statement was cancelled, and may have
    committed (a commit that waits for a synchronous standby commits locally first)."""


class Watchdog:
    """Cancels statements that wait for their reply longer than their bound.

    PostgreSQL's own `statement_timeout` ends before the commit, so it never covers a
    commit that waits for a synchronous standby: on a promoted standby that inherited
    `synchronous_standby_names`, every commit would hang with no error
    (docs/deploying.md, "Failover"). A cancel ends that wait (the server warns and
    returns); the caller then gets a `ReplyTimeout` instead of the result. One thread
    for every connection, so that a wait costs two dict operations, not a timer:
    whoever pops a wait's entry owns it (each dict operation is atomic), so neither
    side takes a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # for starting the thread
        self._waiting: dict[int, tuple[Any, float]] = {}  # key -> (connection, deadline)
        self._keys = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, conn: Any, seconds: float) -> int:
        """Watch one wait of `conn`; the key to `disarm` it with."""
        key = next(self._keys)
        self._waiting[key] = (conn, time.monotonic() + seconds)
        if self._thread is None:
            self._start()
        return key

    def disarm(self, key: int) -> bool:
        """Stop watching; whether the wait was cancelled meanwhile."""
        return self._waiting.pop(key, None) is None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="queuetopia-watchdog", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            late = [key for key, (_, deadline) in list(self._waiting.items()) if deadline < now]
            for key in late:
                entry = self._waiting.pop(key, None)
                if entry is not None:  # else the wait ended meanwhile
                    _cancel(entry[0])


def _cancel(conn: Any) -> None:
    """Send a cancel request (a round trip). A statement that ended since is not
    cancelled (the server ignores a cancel of an idle session), unless its connection
    started the next one already: that one fails, as a statement cut off by the network
    would, and is retried."""
    with contextlib.suppress(Exception):
        if isinstance(conn, psycopg.Connection):
            conn.cancel_safe(timeout=5.0)
        else:
            conn.cancel()  # libpq's cancel request: safe from another thread


WATCHDOG = Watchdog()


class _Bounded:
    """One wait for a reply, watched by the watchdog (a class, not a generator-based
    context manager: this runs at every statement)."""

    __slots__ = ("key", "seconds")

    def __init__(self, conn: Any, seconds: float) -> None:
        self.seconds = seconds
        self.key = WATCHDOG.arm(conn, seconds)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        cancelled = WATCHDOG.disarm(self.key)
        if cancelled and (kind is None or issubclass(kind, psycopg.Error)):
            raise ReplyTimeout(
                f"no reply within commit_timeout ({self.seconds:g} s): cancelled, and it may"
                " have committed (is the database waiting for a synchronous standby that is"
                " gone?)"
            ) from exc


class BoundedConnection(psycopg.Connection[Any]):
    """A connection whose every wait for the server is bounded by `commit_timeout`."""

    commit_timeout: float | None = None
    returned_at = 0.0  # monotonic: when the pool last took it back

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        if self.commit_timeout is None:
            return super().wait(gen, *args, **kwargs)
        with _Bounded(self, self.commit_timeout):
            return super().wait(gen, *args, **kwargs)


class BoundedAsyncConnection(psycopg.AsyncConnection[Any]):
    """`BoundedConnection` for the async pool."""

    commit_timeout: float | None = None
    returned_at = 0.0

    async def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        if self.commit_timeout is None:
            return await super().wait(gen, *args, **kwargs)
        with _Bounded(self, self.commit_timeout):
            return await super().wait(gen, *args, **kwargs)


@dataclass(frozen=True)
class Database:
    """Where and how to connect. `prepare_threshold=None` turns psycopg's prepared
    statements off, as PgBouncer in transaction mode needs. `commit_timeout` bounds
    every wait for a reply on the pools' and the workers' connections."""

    dsn: str
    prepare_threshold: int | None = 5
    commit_timeout: float | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        return {**CONNECT_KWARGS, "prepare_threshold": self.prepare_threshold}

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        """A dedicated connection (listener, heartbeat, runner), outside any pool."""
        with connecting(self.dsn):
            return psycopg.connect(self.dsn, autocommit=autocommit, **self.kwargs)

    def probe(self) -> None:
        """Open and close one connection, soon: raises why the server refuses one."""
        with connecting(self.dsn):
            psycopg.connect(self.dsn, **{**self.kwargs, "connect_timeout": PROBE_TIMEOUT}).close()

    def connect_bounded(self) -> psycopg.Connection[Any]:
        """A dedicated autocommit connection whose every wait for a reply is bounded
        by commit_timeout, as the pools' are."""
        with connecting(self.dsn):
            conn = BoundedConnection.connect(self.dsn, autocommit=True, **self.kwargs)
        self._configure(conn)
        return conn

    def _configure(self, conn: Any) -> None:
        conn.commit_timeout = self.commit_timeout

    async def _configure_async(self, conn: Any) -> None:
        conn.commit_timeout = self.commit_timeout

    def connect_worker(self) -> psycopg.Connection[Any]:
        """A worker's own connection. It runs the same few statements all its life, so
        each is prepared on first use and planned once, with a generic plan: planning
        these statements costs more than running them.

        Sequential scans are off: every statement a worker runs reaches its rows
        through a primary key or a queue's line index. A generic plan made while the
        tables were small (a fresh install, a worker started before a burst) would
        otherwise scan whole tables, and keep doing so until autovacuum's next
        ANALYZE. Without prepared statements (PgBouncer in transaction mode, where a
        session setting would leak to other clients) it is a plain connection: each
        statement is then planned for its own parameters."""
        conn = self.connect_bounded()
        if self.prepare_threshold is None:
            return conn
        conn.prepare_threshold = 0
        try:
            with translate_errors():
                conn.execute("SET enable_seqscan = off")
                conn.execute("SET plan_cache_mode = force_generic_plan")
        except BaseException:
            conn.close()
            raise
        return conn

    async def connect_worker_async(self) -> psycopg.AsyncConnection[Any]:
        """`connect_worker`, for the worker's event loop, with the step prepared by name
        (queries.job_step_prepare) unless prepared statements are off."""
        with connecting(self.dsn):
            conn = await BoundedAsyncConnection.connect(self.dsn, autocommit=True, **self.kwargs)
        await self._configure_async(conn)
        if self.prepare_threshold is None:
            return conn
        conn.prepare_threshold = 0
        try:
            with translate_errors():
                await conn.execute("SET enable_seqscan = off")
                await conn.execute("SET plan_cache_mode = force_generic_plan")
                await conn.execute(queries.job_step_prepare())
        except BaseException:
            await conn.close()
            raise
        return conn

    def open_pool(self, *, max_size: int, name: str) -> ConnectionPool:
        self.connect().close()  # fail now with the reason, not at the pool's timeout
        return ConnectionPool(
            self.dsn,
            connection_class=BoundedConnection,
            configure=self._configure,
            min_size=1,
            max_size=max(max_size, 1),
            # Autocommit: each call is one statement, so no BEGIN/COMMIT round trips;
            # calls that need several statements open a transaction explicitly.
            kwargs={**self.kwargs, "autocommit": True},
            # A connection broken by a database restart is replaced instead of
            # failing the caller's enqueue (`_check`), without a round trip per
            # checkout.
            check=_check,
            reset=_returned,
            name=name,
            timeout=POOL_TIMEOUT,
            open=True,
        )

    async def open_async_pool(self, *, max_size: int) -> AsyncConnectionPool:
        with connecting(self.dsn):
            probe = await psycopg.AsyncConnection.connect(self.dsn, **self.kwargs)
            await probe.close()  # fail now with the reason, not at the pool's timeout
            pool = AsyncConnectionPool(
                self.dsn,
                connection_class=cast(type[psycopg.AsyncConnection[Any]], BoundedAsyncConnection),
                configure=self._configure_async,
                min_size=1,
                max_size=max(max_size, 1),
                kwargs={**self.kwargs, "autocommit": True},
                check=_check_async,
                reset=_returned_async,
                name="queuetopia-async",
                timeout=ASYNC_POOL_TIMEOUT,
                open=False,
            )
            await pool.open()
            return pool


PROBE_TIMEOUT = 3  # seconds: a connection that explains why a pool gave none
POOL_TIMEOUT = 10.0  # seconds a caller waits for a pooled connection
# An async pool serves a whole event loop (a web app's, or many async actions'): its
# callers queue for longer before they give up.
ASYNC_POOL_TIMEOUT = 30.0


def starved(database: Database, size: int, timeout: float) -> DatabaseUnavailable:
    """Why a pool gave no connection in `timeout` (its own message names no cause):
    the server's refusal, when a new connection is refused too (its connection slots
    taken by others, a password rotated, the server away), else every connection of
    the pool was in use by this process."""
    waited = f"no connection from the pool in {timeout:g} s"
    try:
        database.probe()
    except QueuetopiaError as refused:
        cls = type(refused) if isinstance(refused, DatabaseUnavailable) else DatabaseUnavailable
        return cls(f"{refused} ({waited})")
    return DatabaseUnavailable(
        f"database unavailable: {waited}: all {size} were in use (pool_size)"
    )


# A pooled connection used this recently is handed out without the pool's round-trip
# check, unless the server has written to it since (see `_needs_check`).
RECENTLY_USED = 1.0


def _needs_check(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Is a round trip needed to know that this idle pooled connection still works?
    A server that closed it (a restart, a failover, an idle timeout) has written to it
    first (an error, then the end of the stream), so its socket is readable: that is
    seen without a round trip. Only a connection idle longer than RECENTLY_USED is
    checked the slow way, for a peer that vanished without a word (a partition)."""
    if time.monotonic() - getattr(conn, "returned_at", 0.0) > RECENTLY_USED:
        return True
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


def _check(conn: psycopg.Connection[Any]) -> None:
    if _needs_check(conn):
        ConnectionPool.check_connection(conn)


async def _check_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if _needs_check(conn):
        await AsyncConnectionPool.check_connection(conn)


def _returned(conn: psycopg.Connection[Any]) -> None:
    if isinstance(conn, BoundedConnection):
        conn.returned_at = time.monotonic()


async def _returned_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if isinstance(conn, BoundedAsyncConnection):
        conn.returned_at = time.monotonic()


class ThreadConnections:
    """One dedicated autocommit connection per thread, replaced after a failure.

    Every statement the worker runs is a single statement, so autocommit saves the
    BEGIN and COMMIT round trips; a thread never waits on a pool."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._local = threading.local()
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    def get(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._database.connect_worker()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def discard(self) -> None:
        """Drop this thread's connection (after an error that may have broken it)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def close_all(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


class Pools:
    """A topia's own connections: one sync pool, and one async pool per event loop (an
    async pool belongs to the loop that opened it: a web app's loop, and each runner
    thread's loop for async actions that enqueue). Opened on first use. `diagnose`
    says what a missing queuetopia object means (`translate.schema_explained`)."""

    def __init__(
        self, database: Callable[[], Database], size: int, diagnose: Diagnose | None = None
    ) -> None:
        self._database = database
        self._size = size
        self._diagnose = diagnose
        self._pool: ConnectionPool | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool]
        self._async = weakref.WeakKeyDictionary()

    @property
    def opened(self) -> bool:
        return self._pool is not None

    @contextmanager
    def connection(
        self, conn: psycopg.Connection[Any] | None = None
    ) -> Iterator[psycopg.Connection[Any]]:
        """`conn` as is (the caller's transaction), else a pooled autocommit
        connection; errors translated either way, a missing schema explained."""
        if conn is not None:
            with translate_errors(), schema_explained(conn, self._diagnose):
                yield conn
            return
        if self._pool is None:
            self._pool = self._database().open_pool(max_size=self._size, name="queuetopia")
        try:
            with (
                translate_errors(),
                self._pool.connection() as pooled,
                schema_explained(pooled, self._diagnose),
            ):
                yield pooled
        except DatabaseUnavailable as exc:
            if not isinstance(exc.__cause__, PoolTimeout):
                raise
            raise starved(self._database(), self._size, POOL_TIMEOUT) from exc.__cause__

    @asynccontextmanager
    async def async_connection(
        self, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if conn is not None:
            with translate_errors(), schema_explained(conn, self._diagnose):
                yield conn
            return
        loop = asyncio.get_running_loop()
        pool = self._async.get(loop)
        if pool is None:
            pool = await self._database().open_async_pool(max_size=self._size)
            self._async[loop] = pool
        try:
            with translate_errors():
                async with pool.connection() as pooled:
                    with schema_explained(pooled, self._diagnose):
                        yield pooled
        except DatabaseUnavailable as exc:
            if not isinstance(exc.__cause__, PoolTimeout):
                raise
            database = self._database()
            why = await asyncio.to_thread(starved, database, self._size, ASYNC_POOL_TIMEOUT)
            raise why from exc.__cause__

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def close_async(self) -> None:
        """Close the async pool of the running event loop, if it has one."""
        pool = self._async.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()
