"""LISTEN/NOTIFY on a dedicated connection that never opens a transaction.

Notifications sent while the listener is disconnected are lost, so every (re)connect
is followed by a catch-up look; the worker's polling stays on regardless."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import psycopg

from .database import Database
from .errors import QueuetopiaError
from .queries import CHANNEL

logger = logging.getLogger("queuetopia.worker")

PING_EVERY = 5.0


class Listener:
    """Calls `on_notify(queue)` for each notification of `scope` ("" means any queue),
    and `on_notify("")` after every (re)connect."""

    def __init__(self, database: Database, scope: str, on_notify: Callable[[str], None]) -> None:
        self._database = database
        self._scope = scope
        self._on_notify = on_notify
        self._stopped = threading.Event()
        self.healthy = False
        self._thread = threading.Thread(target=self._run, name="queuetopia-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        delay = 0.1
        while not self._stopped.is_set():
            try:
                self._listen()
                delay = 0.1
            except (psycopg.Error, QueuetopiaError) as exc:
                self.healthy = False
                if self._stopped.is_set():
                    return
                logger.warning("listener disconnected (%s); reconnecting", type(exc).__name__)
                self._stopped.wait(delay)
                delay = min(delay * 2, 5.0)

    def _listen(self) -> None:
        with self._database.connect() as conn:
            conn.execute("LISTEN " + CHANNEL)
            self.healthy = True
            self._on_notify("")  # catch up on what was missed while disconnected
            last_ping = time.monotonic()
            while not self._stopped.is_set():
                for note in conn.notifies(timeout=0.5):
                    self._dispatch(note.payload)
                if time.monotonic() - last_ping > PING_EVERY:
                    conn.execute("SELECT 1")
                    last_ping = time.monotonic()

    def _dispatch(self, payload: str) -> None:
        try:
            scope, queue = json.loads(payload)
        except (ValueError, TypeError):
            return
        if scope == self._scope:
            self._on_notify(queue)
