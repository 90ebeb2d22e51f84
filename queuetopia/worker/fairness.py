"""Which queue goes next: a queue gives its slot back when its turn is over (so the
longest-waiting queue goes next and none starves), and a queue found not runnable is
skipped until a notification or a poll says otherwise."""

from __future__ import annotations

import threading
import time

# While other queues wait for a slot, a queue gives its slot back after this long.
# Never more than DRAIN_LIMIT jobs in a row either way.
TURN_SLICE = 0.2
DRAIN_LIMIT = 1000


def turn_over(ran: int, elapsed: float, *, contended: bool) -> bool:
    """Has the turn of a queue that ran `ran` jobs in `elapsed` seconds ended?"""
    return ran >= DRAIN_LIMIT or (contended and elapsed >= TURN_SLICE)


class Skips:
    """Queues to leave out of the next acquisitions, each until its expiry."""

    def __init__(self, skip_for: float) -> None:
        self._skip_for = skip_for
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, queue: str) -> None:
        with self._lock:
            self._until[queue] = time.monotonic() + self._skip_for

    def notified(self, queue: str) -> None:
        """A notification for `queue` ('' for every queue): look at it again."""
        with self._lock:
            if queue:
                self._until.pop(queue, None)
            else:
                self._until.clear()

    def active(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            for queue, expiry in list(self._until.items()):
                if expiry <= now:
                    del self._until[queue]
            return list(self._until)

    def next_expiry_in(self, longest: float) -> float:
        """Seconds until the first skip ends, at most `longest`."""
        now = time.monotonic()
        with self._lock:
            return min([longest, *(max(e - now, 0.0) for e in self._until.values())])
