"""Runs a worker's store calls: each on its thread's own connection, retried while the
database is unavailable (backoff.py), until the worker has stopped. The worker loop and
the completer each hold one; `queuetopia.testing.drain` passes a plain call instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from ..backoff import retry_bookkeeping
from ..db.connections import Database, ThreadConnections
from ..db.rows import Conn
from ..db.translate import translate_errors
from ..errors import DatabaseUnavailable

T = TypeVar("T")


class Bookkeeping(Protocol):
    """Runs a store call on a connection (retrying while the database is away)."""

    def __call__(self, fn: Callable[[Conn], T], /) -> T: ...


class Bookkeeper:
    def __init__(self, database: Database, stopped: Callable[[], bool]) -> None:
        self._conns = ThreadConnections(database)
        self._stopped = stopped

    def __call__(self, fn: Callable[[Conn], T], /) -> T:
        conns = self._conns

        def attempt() -> T:
            try:
                with translate_errors():
                    return fn(conns.get())
            except DatabaseUnavailable:
                conns.discard()
                raise

        return retry_bookkeeping(attempt, stop=self._stopped)

    def close(self) -> None:
        self._conns.close_all()
