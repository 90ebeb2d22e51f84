"""LISTEN/NOTIFY on a dedicated connection that never opens a transaction.

Notifications sent while the listener is disconnected are lost, so every (re)connect
is followed by a catch-up look; the worker's polling stays on regardless. Any role may
NOTIFY the channel with any payload: payloads are untrusted input, and none may stop
the listener (docs/decisions.md)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from ..backoff import Spell, jittered
from ..errors import QueuetopiaError, ValidationError
from ..validation import check_name
from .connections import Database
from .queries import CHANNEL
from .translate import translate_errors

logger = logging.getLogger("queuetopia.worker")

PING_EVERY = 5.0


# PostgreSQL refuses a payload of 8000 bytes or more; a fan-out that names more
# queues than fit says "look at every queue" instead.
MAX_PAYLOAD = 7000


def notify_payload(scope: str, queues: list[str]) -> str:
    """The payload that wakes the workers of `scope` for `queues`: a JSON list, the
    scope first, then each queue ('' alone: every queue)."""
    text = json.dumps([scope, *queues], ensure_ascii=False, separators=(",", ":"))
    if len(queues) > 1 and len(text.encode()) > MAX_PAYLOAD:
        return json.dumps([scope, ""], ensure_ascii=False, separators=(",", ":"))
    return text


def _is_name(queue: str) -> bool:
    try:
        check_name("queue", queue)
    except ValidationError:
        return False
    return True


def parse_payload(payload: str) -> tuple[str, list[str]] | None:
    """(scope, queues) from a payload, or None for anything else."""
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) for v in value):
        return value[0], value[1:]
    return None


class Listener:
    """Calls `on_notify(queue)` for each notification of `scope` ("" means any queue),
    and `on_notify("")` after every (re)connect; `on_health(healthy)` when it connects
    or loses its connection, and `on_exit()` if its thread ends before `stop()`."""

    def __init__(
        self,
        database: Database,
        scope: str,
        on_notify: Callable[[str], None],
        on_health: Callable[[bool], None] = lambda _healthy: None,
        on_exit: Callable[[], None] = lambda: None,
    ) -> None:
        self._database = database
        self._scope = scope
        self._on_notify = on_notify
        self._on_health = on_health
        self._on_exit = on_exit
        self._stopped = threading.Event()
        self._healthy = False
        self._thread = threading.Thread(target=self._run, name="queuetopia-listener", daemon=True)

    @property
    def healthy(self) -> bool:
        """Connected and listening, on a thread that is still alive."""
        return self._healthy and self._thread.is_alive()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: float = 5.0) -> None:
        """Stop listening, and wait (up to `wait` s) for the thread to close its
        connection: a process that exits while the thread is still inside libpq may
        crash at exit (once seen: `double free or corruption`, status -6)."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=wait)

    def _set_healthy(self, healthy: bool) -> None:
        if healthy != self._healthy:
            self._healthy = healthy
            self._on_health(healthy)

    def _run(self) -> None:
        try:
            self._reconnecting()
        finally:
            self._set_healthy(False)
            if not self._stopped.is_set():
                self._on_exit()  # the worker starts a new listener

    def _reconnecting(self) -> None:
        delay = 0.1
        spell = Spell("listener", "listens again")
        while not self._stopped.is_set():
            try:
                self._listen(spell)
                delay = 0.1
            except Exception as exc:
                self._set_healthy(False)
                if self._stopped.is_set():
                    return
                if isinstance(exc, QueuetopiaError):
                    spell.failed(exc)
                else:
                    logger.exception("listener failed; reconnecting")
                self._stopped.wait(jittered(delay))
                delay = min(delay * 2, 5.0)

    def _listen(self, spell: Spell) -> None:
        with translate_errors(), self._database.connect() as conn:
            conn.execute("LISTEN " + CHANNEL)
            self._set_healthy(True)
            spell.ended()
            self._on_notify("")  # catch up on what was missed while disconnected
            last_ping = time.monotonic()
            while not self._stopped.is_set():
                for note in conn.notifies(timeout=0.5):
                    self._dispatch(note.payload)
                if time.monotonic() - last_ping > PING_EVERY:
                    conn.execute("SELECT 1")
                    last_ping = time.monotonic()

    def _dispatch(self, payload: str) -> None:
        parsed = parse_payload(payload)
        if parsed is not None and parsed[0] == self._scope:
            for queue in parsed[1]:
                if queue == "" or _is_name(queue):  # a worker looks the queue up
                    self._on_notify(queue)
