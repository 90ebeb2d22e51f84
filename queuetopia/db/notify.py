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
from datetime import datetime

from ..backoff import Spell, jittered
from ..errors import QueuetopiaError, ValidationError
from ..models import AttemptId
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


# Most attempts one cancel payload names (each about 60 bytes).
MAX_CANCELS = 100


def cancel_payloads(scope: str, attempts: list[AttemptId]) -> list[str]:
    """The payloads that tell the workers of `scope` that running attempts were
    cancelled (docs/flow-control.md): {"scope", "cancel": [[job id, attempted_at]]}.
    An attempt is named by its start, so a cancel never reaches a later attempt."""
    named = [[job_id, at.isoformat()] for job_id, at in attempts]
    return [
        json.dumps({"scope": scope, "cancel": named[i : i + MAX_CANCELS]}, separators=(",", ":"))
        for i in range(0, len(named), MAX_CANCELS)
    ]


def parse_cancel(payload: str) -> tuple[str, list[AttemptId]] | None:
    """(scope, attempts) from a cancel payload, or None for anything else (any role
    may notify: a payload is untrusted input)."""
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("scope"), str):
        return None
    named = value.get("cancel")
    if not isinstance(named, list) or len(named) > MAX_CANCELS:
        return None
    attempts = [_claim(item) for item in named]
    if any(a is None for a in attempts):
        return None
    return value["scope"], [a for a in attempts if a is not None]


def _claim(item: object) -> AttemptId | None:
    if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], str):
        return None
    job_id, at = item
    if type(job_id) is not int or not 0 < job_id < 2**63 or len(at) > 40:
        return None
    try:
        started = datetime.fromisoformat(at)
    except ValueError:
        return None
    return (job_id, started) if started.tzinfo is not None else None


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
    or loses its connection, `on_exit()` if its thread ends before `stop()`, and
    `on_cancel((job id, attempted_at))` for each attempt a cancel payload names."""

    def __init__(
        self,
        database: Database,
        scope: str,
        on_notify: Callable[[str], None],
        on_health: Callable[[bool], None] = lambda _healthy: None,
        on_exit: Callable[[], None] = lambda: None,
        on_cancel: Callable[[AttemptId], None] = lambda _attempt: None,
    ) -> None:
        self._database = database
        self._scope = scope
        self._on_notify = on_notify
        self._on_health = on_health
        self._on_exit = on_exit
        self._on_cancel = on_cancel
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
        # A cancel is a JSON object, a wake a JSON array: each payload is parsed once,
        # as a wave of wakes (a release per queue drained) reaches every worker.
        if payload.lstrip().startswith("{"):
            cancel = parse_cancel(payload)
            if cancel is not None and cancel[0] == self._scope:
                for attempt in cancel[1]:
                    self._on_cancel(attempt)
            return
        parsed = parse_payload(payload)
        if parsed is not None and parsed[0] == self._scope:
            for queue in parsed[1]:
                if queue == "" or _is_name(queue):  # a worker looks the queue up
                    self._on_notify(queue)
