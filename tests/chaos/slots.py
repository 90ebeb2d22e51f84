"""Another application that takes every free connection slot of a server (its
`max_connections`), and every slot freed while it holds them, as a busy application's
pools would: what a worker and a producer meet when the server is out of slots."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import psycopg

NO_SLOT = ("too many clients", "remaining connection slots are reserved")


class SlotHog:
    def __init__(self, dsn: str, *, every: float = 0.05) -> None:
        self.dsn = dsn
        self.every = every  # seconds between tries to take a slot freed meanwhile
        self.conns: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._keeper = threading.Thread(target=self._keep, name="chaos-slot-hog", daemon=True)

    def __enter__(self) -> SlotHog:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: self._take_all(), range(8)))
        self._keeper.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    @property
    def taken(self) -> int:
        with self._lock:
            return len(self.conns)

    def release(self) -> None:
        self._stopped.set()
        if self._keeper.is_alive():
            self._keeper.join(timeout=10)
        with self._lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()

    def _take_all(self) -> None:
        while not self._stopped.is_set() and self._take():
            pass

    def _take(self) -> bool:
        """One more slot; False when the server has none (any other error is raised)."""
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            if any(text in str(exc) for text in NO_SLOT):
                return False
            raise
        with self._lock:
            self.conns.append(conn)
        return True

    def _keep(self) -> None:
        while not self._stopped.wait(self.every):
            with contextlib.suppress(psycopg.OperationalError):
                self._take_all()


def wait_refused(dsn: str, timeout: float = 10.0) -> str:
    """The error a new connection gets while the slots are taken."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            if any(text in str(exc) for text in NO_SLOT):
                return str(exc)
            raise
        assert time.monotonic() < deadline, "a connection slot stayed free"
        time.sleep(0.05)
