"""Connections: resolving the DSN and opening pools and dedicated connections."""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from .errors import translate_errors

DSN_ENV = "QUEUETOPIA_DSN"

# Dead peers are noticed by TCP keepalives within seconds, not hours.
CONNECT_KWARGS: dict[str, Any] = {
    "application_name": "queuetopia",
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def resolve_dsn(dsn: str | None) -> str:
    """The DSN given, else $QUEUETOPIA_DSN, else the embedded server's."""
    if dsn:
        return dsn
    if os.environ.get(DSN_ENV):
        return os.environ[DSN_ENV]
    from .embedded import embedded_dsn

    return embedded_dsn()


def open_pool(dsn: str, *, max_size: int, name: str) -> ConnectionPool:
    return ConnectionPool(
        dsn,
        min_size=1,
        max_size=max(max_size, 1),
        # Autocommit: each call is one statement, so no BEGIN/COMMIT round trips;
        # calls that need several statements open a transaction explicitly.
        kwargs={**CONNECT_KWARGS, "autocommit": True},
        name=name,
        timeout=10.0,
        open=True,
    )


async def open_async_pool(dsn: str, *, max_size: int) -> AsyncConnectionPool:
    with translate_errors():
        probe = await psycopg.AsyncConnection.connect(dsn, **CONNECT_KWARGS)
        await probe.close()  # fail now with the reason, not at the pool's timeout
        pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=max(max_size, 1),
            kwargs={**CONNECT_KWARGS, "autocommit": True},
            name="queuetopia-async",
            timeout=30.0,
            open=False,
        )
        await pool.open()
        return pool


def connect(dsn: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A dedicated connection (listener, heartbeat), outside any pool."""
    with translate_errors():
        return psycopg.connect(dsn, autocommit=autocommit, **CONNECT_KWARGS)


class ThreadConnections:
    """One dedicated autocommit connection per thread, replaced after a failure.

    Every statement the worker runs is a single statement, so autocommit saves the
    BEGIN and COMMIT round trips; a thread never waits on a pool."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._local = threading.local()
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    def get(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = connect(self._dsn, autocommit=True)
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
