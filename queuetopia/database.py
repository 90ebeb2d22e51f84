"""Connections: resolving the DSN and opening pools and dedicated connections."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

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
        kwargs=dict(CONNECT_KWARGS),
        check=ConnectionPool.check_connection,
        name=name,
        timeout=30.0,
        open=True,
    )


def connect(dsn: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A dedicated connection (listener, heartbeat), outside any pool."""
    with translate_errors():
        return psycopg.connect(dsn, autocommit=autocommit, **CONNECT_KWARGS)
