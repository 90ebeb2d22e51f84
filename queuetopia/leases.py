"""The leases a worker holds: which queue, under which lease, trusted until when, and
what runs under it. The worker loop takes them, runners give them back, the heartbeat
renews them or loses them; `queuetopia.testing.drain` holds its one lease here too.

A lease is trusted locally for TRUST_SHARE of lock_ttl after the start of its last
renewal, so the worker stops a job before the database lets the queue go; an
execution that outlives its lost lease by the fail-stop grace ends the process
(failstop.py, docs/guarantees.md)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from uuid import UUID

from . import failstop
from .db.store import Lease
from .events import Observers
from .executor import Execution
from .models import Interrupt, Job

TRUST_SHARE = 0.8


def node_identity(name: str | None = None) -> tuple[str, str]:
    """(node, owner): the node shown in attempts ("host:pid[:name]"), and the owner
    written on leases, unique to this worker."""
    base = f"{socket.gethostname()}:{os.getpid()}"
    node = f"{base}:{name}" if name else base
    return node, f"{node}:{uuid.uuid4().hex[:12]}"


@dataclass
class Held:
    """A queue held under a lease, and the attempt running under it."""

    lease: Lease
    trusted_until: float
    lost: bool = False
    lost_at: float | None = None  # time.monotonic() when it was lost
    execution: Execution | None = None
    attempt_started: float = 0.0  # monotonic start of the attempt being recorded
    job: Job | None = None  # the job of `execution`
    started_at: float = 0.0  # time.monotonic() when `execution` started
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lose(self) -> None:
        """Stop trusting the lease; interrupt the running job, if any (if it does not
        stop, the worker fails stop)."""
        with self.lock:
            self.lost = True
            if self.lost_at is None:
                self.lost_at = time.monotonic()
            execution = self.execution
        if execution is not None:
            execution.interrupt(Interrupt.LEASE_LOST)

    def stuck_since(self) -> float | None:
        """Since when an execution runs under this lost lease, if one does: from the
        loss, or from the start of an execution that started after it (a job claimed
        by a statement whose reply came late, interrupted as it starts)."""
        with self.lock:
            if self.execution is None or self.lost_at is None:
                return None
            return max(self.lost_at, self.started_at)


class Leases:
    def __init__(self, lock_ttl: float, observers: Observers) -> None:
        self._window = lock_ttl * TRUST_SHARE
        self._grace = lock_ttl * failstop.GRACE_SHARE
        self._observers = observers
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()

    def take(self, lease: Lease, started: float) -> Held:
        """Hold `lease`, trusted from `started` (when the statement that took it was
        sent: the database's lock_ttl runs from a moment after that)."""
        held = Held(lease, started + self._window)
        with self._lock:
            self._held[lease.queue] = held
        return held

    def get(self, lease: Lease) -> Held | None:
        with self._lock:
            held = self._held.get(lease.queue)
        return held if held is not None and held.lease.lease_id == lease.lease_id else None

    def give_back(self, held: Held) -> None:
        with self._lock:
            # The loop may hold the queue again already, under a new lease taken
            # after our release: leave that one alone.
            if self._held.get(held.lease.queue) is held:
                del self._held[held.lease.queue]

    def count(self) -> int:
        with self._lock:
            return len(self._held)

    def queues(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def ids(self) -> set[UUID]:
        with self._lock:
            return {held.lease.lease_id for held in self._held.values()}

    def all(self) -> list[Held]:
        with self._lock:
            return list(self._held.values())

    # -- for the heartbeat ---------------------------------------------------------

    def to_renew(self) -> list[tuple[Lease, float]]:
        """Each lease, with the moment its trust runs out."""
        return [(held.lease, held.trusted_until) for held in self.all()]

    def renewed(self, lease: Lease, started: float) -> None:
        held = self.get(lease)
        if held is not None:
            held.trusted_until = started + self._window

    def lost(self, lease: Lease) -> None:
        held = self.get(lease)
        if held is not None and not held.lost:
            self._observers.lease_lost(lease.queue)
            held.lose()

    def interrupt_all(self, reason: Interrupt) -> None:
        for held in self.all():
            if held.execution is not None:
                held.execution.interrupt(reason)

    def fail_stop_if_stuck(self, now: float) -> float:
        """Exit the process if an execution outlived its lost lease by the grace;
        return when to look again."""
        look_again = float("inf")
        for held in self.all():
            since = held.stuck_since()
            if since is None:
                continue
            if now >= since + self._grace:
                failstop.fail_stop(held.lease.queue, held.job)
            look_again = min(look_again, since + self._grace)
        return look_again
