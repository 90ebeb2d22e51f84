"""Keeps a worker's leases alive: one batched renewal every lock_ttl/3 on a
connection of its own, so busy job connections can never starve it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from . import store
from .database import Database
from .errors import QueuetopiaError
from .store import Lease

logger = logging.getLogger("queuetopia.worker")


class Heartbeat:
    """Renews the leases `held()` returns; calls `on_lost(lease)` for each lease that
    was not renewed, or whose local trust deadline passed without a renewal."""

    def __init__(
        self,
        database: Database,
        scope: str,
        ttl: float,
        held: Callable[[], list[tuple[Lease, float]]],
        on_renewed: Callable[[Lease, float], None],
        on_lost: Callable[[Lease], None],
        on_watch: Callable[[float], float] | None = None,
    ) -> None:
        self._database, self._scope, self._ttl = database, scope, ttl
        self._held, self._on_renewed, self._on_lost = held, on_renewed, on_lost
        self._on_watch = on_watch
        self._conn: psycopg.Connection[Any] | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queuetopia-heartbeat", daemon=True)
        # The trust deadline is watched apart from the renewals: a renewal stuck on a
        # half-open connection must not keep a job running past its lease.
        self._trust_thread = threading.Thread(
            target=self._watch_trust, name="queuetopia-trust", daemon=True
        )

    @property
    def interval(self) -> float:
        return self._ttl / 3

    def start(self) -> None:
        self._thread.start()
        self._trust_thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._trust_thread.join(timeout=5)

    def _watch_trust(self) -> None:
        """Wake at each trust deadline (and at each moment `on_watch(now)` asks for, to
        fail stop), not merely every so often: the margins are tenths of lock_ttl."""
        while True:
            now = time.monotonic()
            wake = now + min(self.interval / 4, 0.25)
            for lease, trusted_until in self._held():
                if now > trusted_until:
                    self._on_lost(lease)
                else:
                    wake = min(wake, trusted_until)
            if self._on_watch is not None:
                wake = min(wake, self._on_watch(now))
            if self._stopped.wait(max(wake - time.monotonic(), 0.0) + 0.001):
                return

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.beat()
        if self._conn is not None:
            self._conn.close()

    def beat(self) -> None:
        held = self._held()
        if not held:
            return
        started = time.monotonic()
        try:
            renewed = self._renew([lease for lease, _ in held])
        except (psycopg.Error, QueuetopiaError) as exc:
            logger.warning("heartbeat failed (%s); will retry", type(exc).__name__)
            self._drop_connection()
            renewed = None
        for lease, trusted_until in held:
            if renewed is not None and lease.queue in renewed:
                self._on_renewed(lease, started)
            elif renewed is not None or time.monotonic() > trusted_until:
                self._on_lost(lease)

    def _renew(self, leases: list[Lease]) -> set[str]:
        if self._conn is None or self._conn.closed:
            self._conn = self._database.connect_worker()
        return store.lease_renew(self._conn, scope=self._scope, ttl=self._ttl, leases=leases)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
