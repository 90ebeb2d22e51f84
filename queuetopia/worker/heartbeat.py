"""Keeps a worker's leases alive: one batched renewal every lock_ttl/3 on a
connection of its own, so neither busy jobs nor the worker's event loop can starve
it. The renewal also stores each queue's floor (docs/design.md, "The floor").

A renewal that fails is tried again every lock_ttl/20 or so (jittered) while a lease
is still trusted, not at the next interval: the first moment the database takes
writes again is used, and an outage shorter than the bound in docs/guarantees.md
("Outages") costs no lease."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..backoff import Spell, jittered
from ..db import steps
from ..db.connections import Database
from ..db.rows import Conn
from ..db.translate import translate_errors
from ..errors import QueuetopiaError
from .holds import RETRY_SHARE, Hold, Holds

logger = logging.getLogger("queuetopia.worker")


class Heartbeat:
    """Renews the leases of `holds`; loses each one that was not renewed, or whose
    local trust deadline passed without a renewal (`on_lost` is told); fails stop
    when an execution outlives its lost lease (holds.py)."""

    def __init__(
        self,
        database: Database,
        scope: str,
        ttl: float,
        holds: Holds,
        on_lost: Callable[[Hold], None] = lambda _hold: None,
    ) -> None:
        self._database, self._scope, self._ttl = database, scope, ttl
        self._holds, self._on_lost = holds, on_lost
        self._conn: Conn | None = None
        self._spell = Spell("heartbeat", "renewed the leases again")
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

    @property
    def retry(self) -> float:
        """Seconds until the renewal is tried again after one failed."""
        return jittered(self._ttl * RETRY_SHARE)

    def start(self) -> None:
        self._thread.start()
        self._trust_thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._trust_thread.join(timeout=5)

    def _lose(self, hold: Hold) -> None:
        if not hold.lost:
            hold.lose()
            self._on_lost(hold)

    def _watch_trust(self) -> None:
        """Wake at each trust deadline (and at each moment a fail-stop may be due),
        not merely every so often: the margins are tenths of lock_ttl."""
        while True:
            now = time.monotonic()
            wake = now + min(self.interval / 4, 0.25)
            for hold in self._holds.all():
                if now > hold.trusted_until:
                    self._lose(hold)
                else:
                    wake = min(wake, hold.trusted_until)
            wake = min(wake, self._holds.fail_stop_if_stuck(now))
            if self._stopped.wait(max(wake - time.monotonic(), 0.0) + 0.001):
                return

    def _run(self) -> None:
        wait = self.interval
        while not self._stopped.wait(wait):
            wait = self.interval if self.beat() else self.retry
        self._drop_connection()

    def beat(self) -> bool:
        """Renew the leases held; False when the database could not be reached and a
        lease is still trusted (try again soon)."""
        held = [hold for hold in self._holds.all() if not hold.lost]
        if not held:
            return True
        started = time.monotonic()
        try:
            renewed = self._renew(held)
        except QueuetopiaError as exc:
            self._failed(exc)
            renewed = None
        else:
            self._spell.ended()
        for hold in held:
            if renewed is not None and hold.queue in renewed:
                self._holds.renewed(hold, started)
            elif self._holds.get(hold.queue) is not hold:
                continue  # given back while it was renewed: not lost, released
            elif renewed is not None or time.monotonic() > hold.trusted_until:
                self._lose(hold)
        return renewed is not None or not any(hold.trusted() for hold in held)

    def _failed(self, exc: QueuetopiaError) -> None:
        self._spell.failed(exc)
        self._drop_connection()

    def _renew(self, held: list[Hold]) -> set[str]:
        with translate_errors():
            if self._conn is None or self._conn.closed:
                self._conn = self._database.connect_worker()
            leases = [(hold.lease, hold.floor) for hold in held]
            renewed, cancelled = steps.lease_renew(
                self._conn, scope=self._scope, ttl=self._ttl, leases=leases
            )
        for attempt in cancelled:  # a cancel whose notification was lost
            self._holds.cancel(attempt)
        return renewed

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with translate_errors():
                self._conn.close()
            self._conn = None
