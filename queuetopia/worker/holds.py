"""The queues a worker holds: under which lease, trusted until when, what runs under
it, and where the search for its next head starts (its floor). The worker's loop
takes and gives back holds, the heartbeat renews them or loses them;
`queuetopia.testing.drain` holds its one queue here too.

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
from collections import OrderedDict
from dataclasses import dataclass, field

from ..models import AttemptId, Found, Interrupt, Job, Lease, Position, Step
from . import failstop
from .executor import Execution

TRUST_SHARE = 0.8
# While a lease is trusted, what keeps it (its renewal, the steps that record outcomes
# under it) is tried again at most this share of lock_ttl apart after a failure: the
# bound on outages of docs/guarantees.md ("Outages") rests on both shares.
RETRY_SHARE = 1 / 20


# Cancels asked of jobs this worker does not run (yet): at most this many are kept.
KEEP_CANCELS = 10_000


class Cancels:
    """Attempts an operator cancelled that this worker may yet start (a job claimed
    ahead, or one whose claim and cancel cross): interrupted as they start."""

    def __init__(self) -> None:
        self._ids: OrderedDict[AttemptId, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, attempt: AttemptId) -> None:
        with self._lock:
            self._ids[attempt] = None
            while len(self._ids) > KEEP_CANCELS:
                self._ids.popitem(last=False)

    def __bool__(self) -> bool:
        """Any pending? Read without the lock (almost always: none, and a lock per job
        start costs); an add that comes after this read finds the execution itself."""
        return bool(self._ids)

    def pop(self, attempt: AttemptId | None) -> bool:
        if attempt is None:
            return False
        with self._lock:
            return self._ids.pop(attempt, False) is None


def attempt_of(job: Job) -> AttemptId | None:
    return None if job.attempted_at is None else (job.id, job.attempted_at)


def node_identity(name: str | None = None) -> tuple[str, str]:
    """(node, owner): the node shown in attempts ("host:pid[:name]"), and the owner
    written on leases, unique to this worker."""
    base = f"{socket.gethostname()}:{os.getpid()}"
    node = f"{base}:{name}" if name else base
    return node, f"{node}:{uuid.uuid4().hex[:12]}"


@dataclass(eq=False)
class Hold:
    """A queue held under a lease, and the attempt running under it.

    `floor` and `seen` say where the next head search starts (JOB_STEP); `last` is
    the database's now and the quietness of the last search, which tell how far the
    next one may move the floor (`searched`, docs/design.md "The floor")."""

    lease: Lease
    trusted_until: float
    floor: Position | None = None
    seen: int = 0
    last: tuple[Position, bool] | None = None
    lost: bool = False
    lost_at: float | None = None  # time.monotonic() when it was lost
    execution: Execution | None = None
    job: Job | None = None  # the job of `execution`
    started_at: float = 0.0  # time.monotonic() when `execution` started
    lock: threading.Lock = field(default_factory=threading.Lock)
    cancels: Cancels | None = None  # the worker's, read as an execution starts

    @property
    def queue(self) -> str:
        return self.lease.queue

    def searched(self, step: Step) -> None:
        """Move the floor after a step that searched this queue's line.

        The search started at `step.searched_from`. Behind the head it found, nothing
        is in line now; nothing joins there later either, unless a producer was in
        the middle of its transaction during the search before (not quiet), or the
        job joins at a time before that search (a rewind, counted on the queue row):
        a job due now joins at the clock time of its insert, after its lock. So the
        floor moves to the lower of the head found and the last search's now, once
        that search was quiet; never below where this search started."""
        if not step.searched:
            return
        start = floor = step.searched_from
        if self.last is not None and self.last[1]:
            bound = self.last[0]
            job = step.job if step.found is not Found.ZOMBIE else None
            if job is not None:
                bound = min(bound, (job.scheduled_at, job.seq))
            floor = bound if start is None else max(start, bound)
        self.floor, self.seen = floor, step.rewinds
        self.last = ((step.db_now, 0), step.quiet)

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

    def trusted(self) -> bool:
        return not self.lost and time.monotonic() <= self.trusted_until

    def started(self, execution: Execution, job: Job) -> None:
        """`execution` of `job` starts now: the very last check before the action's
        first line. A lease lost, or past its trust (a pause, a partition, since the
        claim), interrupts it at once (docs/guarantees.md)."""
        with self.lock:
            self.execution, self.job = execution, job
            self.started_at = now = time.monotonic()
            lost = self.lost
        if lost:
            execution.interrupt(Interrupt.LEASE_LOST)
        elif now > self.trusted_until:
            self.lose()
        elif self.cancels and self.cancels.pop(attempt_of(job)):
            execution.interrupt(Interrupt.CANCELLED)

    def fenced(self, job: Job) -> Job:
        """`job` as its action sees it: with this lease's fencing token."""
        return job.model_copy(update={"fence": self.lease.token})

    def ended(self) -> None:
        with self.lock:
            self.execution = self.job = None

    def stuck_since(self) -> float | None:
        """Since when an execution runs under this lost lease, if one does: from the
        loss, or from the start of an execution that started after it (a job claimed
        by a statement whose reply came late, interrupted as it starts)."""
        with self.lock:
            if self.execution is None or self.lost_at is None:
                return None
            return max(self.lost_at, self.started_at)


class Holds:
    """The holds of one worker, by queue. Written by the worker's loop; read by the
    heartbeat and trust threads (under the lock)."""

    def __init__(self, lock_ttl: float) -> None:
        self.window = lock_ttl * TRUST_SHARE
        self._grace = lock_ttl * failstop.GRACE_SHARE
        self._held: dict[str, Hold] = {}
        self._lock = threading.Lock()
        self._cancels = Cancels()

    def take(self, lease: Lease, started: float, floor: Position | None, seen: int) -> Hold:
        """Hold `lease`, trusted from `started` (when the statement that took it was
        sent: the database's lock_ttl runs from a moment after that)."""
        hold = Hold(lease, started + self.window, floor, seen, cancels=self._cancels)
        with self._lock:
            self._held[lease.queue] = hold
        return hold

    def get(self, queue: str) -> Hold | None:
        with self._lock:
            return self._held.get(queue)

    def give_back(self, hold: Hold) -> None:
        with self._lock:
            if self._held.get(hold.queue) is hold:
                del self._held[hold.queue]

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def queues(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def all(self) -> list[Hold]:
        with self._lock:
            return list(self._held.values())

    def renewed(self, hold: Hold, started: float) -> None:
        hold.trusted_until = started + self.window

    def cancel(self, attempt: AttemptId) -> None:
        """An operator cancelled `attempt`: interrupt it if it runs here, else should
        it start here (docs/flow-control.md). Any thread. Noted before the holds are
        looked at: an execution starting meanwhile finds it."""
        self._cancels.add(attempt)
        for hold in self.all():
            with hold.lock:
                running = hold.job is not None and attempt_of(hold.job) == attempt
                execution = hold.execution if running else None
            if execution is not None:
                self._cancels.pop(attempt)
                execution.interrupt(Interrupt.CANCELLED)

    def interrupt_all(self, reason: Interrupt) -> None:
        for hold in self.all():
            with hold.lock:
                execution = hold.execution
            if execution is not None:
                execution.interrupt(reason)

    def fail_stop_if_stuck(self, now: float) -> float:
        """Exit the process if an execution outlived its lost lease by the grace;
        return when to look again."""
        look_again = float("inf")
        for hold in self.all():
            since = hold.stuck_since()
            if since is None:
                continue
            if now >= since + self._grace:
                failstop.fail_stop(hold.queue, hold.job)
            look_again = min(look_again, since + self._grace)
        return look_again
