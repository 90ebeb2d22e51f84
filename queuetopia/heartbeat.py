"""Keeps a worker's leases alive: one batched renewal every lock_ttl/3 on a
connection of its own, so busy job connections can never starve it."""

from __future__ import annotations

import logging
import threading
import time

from .db import store
from .db.connections import Database
from .db.store import Conn, Lease
from .db.translate import translate_errors
from .errors import QueuetopiaError
from .leases import Leases

logger = logging.getLogger("queuetopia.worker")


class Heartbeat:
    """Renews the leases of `leases`; loses each one that was not renewed, or whose
    local trust deadline passed without a renewal; fails stop when an execution
    outlives its lost lease (leases.py)."""

    def __init__(self, database: Database, scope: str, ttl: float, leases: Leases) -> None:
        self._database, self._scope, self._ttl = database, scope, ttl
        self._leases = leases
        self._conn: Conn | None = None
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
        """Wake at each trust deadline (and at each moment a fail-stop may be due),
        not merely every so often: the margins are tenths of lock_ttl."""
        while True:
            now = time.monotonic()
            wake = now + min(self.interval / 4, 0.25)
            for lease, trusted_until in self._leases.to_renew():
                if now > trusted_until:
                    self._leases.lost(lease)
                else:
                    wake = min(wake, trusted_until)
            wake = min(wake, self._leases.fail_stop_if_stuck(now))
            if self._stopped.wait(max(wake - time.monotonic(), 0.0) + 0.001):
                return

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.beat()
        self._drop_connection()

    def beat(self) -> None:
        held = self._leases.to_renew()
        if not held:
            return
        started = time.monotonic()
        try:
            renewed = self._renew([lease for lease, _ in held])
        except QueuetopiaError as exc:
            logger.warning("heartbeat failed (%s); will retry", type(exc).__name__)
            self._drop_connection()
            renewed = None
        for lease, trusted_until in held:
            if renewed is not None and lease.queue in renewed:
                self._leases.renewed(lease, started)
            elif renewed is not None or time.monotonic() > trusted_until:
                self._leases.lost(lease)

    def _renew(self, leases: list[Lease]) -> set[str]:
        with translate_errors():
            if self._conn is None or self._conn.closed:
                self._conn = self._database.connect_worker()
            return store.lease_renew(self._conn, scope=self._scope, ttl=self._ttl, leases=leases)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with translate_errors():
                self._conn.close()
            self._conn = None
