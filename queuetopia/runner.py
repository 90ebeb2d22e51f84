"""Drains one leased queue: claim its head, run it, record the outcome and claim the
next head in the same statement, until nothing more is runnable now, the lease is
lost, the worker stops, or another queue's turn has come. Then release the queue."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from . import store
from .backoff import default_backoff
from .errors import MAX_NOTE_BYTES, QueuetopiaError, capped, redact, storable
from .events import LogObserver, Observers, first_line
from .executor import Execution, execute
from .finisher import Finisher
from .models import Job, Outcome
from .store import Conn, Finish, Lease

if TYPE_CHECKING:
    from .app import Queuetopia

logger = logging.getLogger("queuetopia.worker")
T = TypeVar("T")


class Bookkeeping(Protocol):
    """Runs a store call on a connection, retrying while the database is away."""

    def __call__(self, fn: Callable[[Conn], T], /) -> T: ...


@dataclass
class Held:
    """A queue this worker holds a lease on."""

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
        stop, the worker fails stop: queuetopia/failstop.py)."""
        with self.lock:
            self.lost = True
            if self.lost_at is None:
                self.lost_at = time.monotonic()
            execution = self.execution
        if execution is not None:
            execution.interrupt("lease lost")


@dataclass(frozen=True)
class RunContext:
    """What a runner needs from its worker."""

    topia: Queuetopia
    node: str
    bookkeeping: Bookkeeping
    stopping: threading.Event
    turn_over: Callable[[int, float], bool]  # (jobs run, seconds held) -> yield the slot?
    skip: Callable[[str], None]  # look at this queue again only when told
    observers: Observers = field(default_factory=lambda: Observers([LogObserver()]))


class Runner:
    """Shared by a worker's runner threads; their outcomes are recorded in batches."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.scope = ctx.topia.scope
        self._finisher = Finisher(self._finish_batch)

    def _finish_batch(self, batch: list[Finish]) -> list[tuple[bool, Job | None]]:
        return self.ctx.bookkeeping(
            lambda c: store.job_finish_many(c, scope=self.scope, node=self.ctx.node, batch=batch)
        )

    def drain(self, held: Held, first: Job | None = None) -> None:
        """Run the queue's due jobs, starting with `first` if its head was claimed
        with the lease (its attempt has started: it runs even if the worker stops)."""
        started, ran, exhausted = time.monotonic(), 0, False
        try:
            job = first if first is not None else self._first_job(held)
            exhausted = job is None
            while job is not None:
                try:
                    outcome = self._perform(held, job)
                    ran += 1
                    go_on = outcome.ok and not self._must_stop(held, ran, started)
                except BaseException:
                    self._finisher.abandon(job)
                    raise
                job = self._finish(held, job, outcome, claim_next=go_on)
                exhausted = go_on and job is None
        finally:
            self._release(held, exhausted=exhausted)

    def _must_stop(self, held: Held, ran: int, started: float) -> bool:
        elapsed = time.monotonic() - started
        return held.lost or self.ctx.stopping.is_set() or self.ctx.turn_over(ran, elapsed)

    # -- claiming -------------------------------------------------------------------

    def _first_job(self, held: Held) -> Job | None:
        """The job to run first, recovering a lost worker's job on the way."""
        while not held.lost and not self.ctx.stopping.is_set():
            claim = self.ctx.bookkeeping(
                lambda c: store.job_claim_head(
                    c, scope=self.scope, lease=held.lease, node=self.ctx.node
                )
            )
            if not claim.leased:
                held.lose()
                return None
            head = claim.head
            if claim.claimed or (
                head and head.state == "running" and head.lease_id == held.lease.lease_id
            ):
                return head  # ours, possibly claimed by a try whose reply was lost
            if head is None or head.state != "running":
                return None  # empty, not due, paused, or blocked for good
            lost = Outcome(
                ok=False, error=f"worker lost: {head.attempted_by} stopped renewing its lease"
            )
            held.attempt_started = time.monotonic()
            self._finish(held, head, lost, claim_next=False)
        return None

    # -- running --------------------------------------------------------------------

    def _perform(self, held: Held, job: Job) -> Outcome:
        self.ctx.observers.job_started(job)
        started = held.attempt_started = time.monotonic()

        def on_start(execution: Execution) -> None:
            with held.lock:
                held.execution, held.job = execution, job
                held.started_at = now = time.monotonic()
                lost = held.lost
            if lost:
                execution.interrupt("lease lost")
            elif now > held.trusted_until:
                # Paused (SIGSTOP, a long GC) or partitioned between the claim and
                # now: the lease may be another worker's already, so the job must not
                # start (docs/guarantees.md). The trust watcher would say so too, but
                # it may wake after the action has begun.
                held.lose()

        outcome = execute(job, self.ctx.topia.actions.get(job.action), on_start)
        with held.lock:
            held.execution = held.job = None
        self.ctx.observers.job_ended(job, outcome, time.monotonic() - started)
        return outcome

    # -- recording ------------------------------------------------------------------

    def _finish(self, held: Held, job: Job, outcome: Outcome, *, claim_next: bool) -> Job | None:
        """Record the outcome; return the next job claimed with it, if any."""
        state, backoff = self._next_state(job, outcome)
        error = None if outcome.error is None else storable(outcome.error)
        blocking = state == "pending" or (state == "failed" and job.on_exhausted == "block")
        shutdown = outcome.interrupted == "shutdown"
        if blocking and not shutdown and (over := self._blocked_too_long(held, job)):
            state, backoff, error = "parked", None, f"{error}\n\n{over}"
        recorded, claimed = self._finisher.finish(
            Finish(held.lease, job, state, error, outcome.result, backoff, claim_next)
        )
        if not recorded:
            if not self._committed_before(job, held.lease):
                logger.warning(
                    "lease lost on queue %r: outcome of job %d discarded", job.queue, job.id
                )
                held.lose()
                return None
            # The first try committed but its reply was lost: it may have claimed the
            # next head too, which the claim below finds running under our lease.
            claimed = self._first_job(held) if claim_next else None
        if state == "parked":
            logger.warning("parked job %d of queue %r: %s", job.id, job.queue, error)
            self.ctx.observers.job_parked(job)
        if not outcome.ok:
            self._call_failure_hooks(held, job, outcome)
        return claimed

    def _blocked_too_long(self, held: Held, job: Job) -> str | None:
        """Why `job` is parked instead of retried, or None (docs/blocking.md): it
        has held its queue blocked, since its first failed attempt, for longer than
        its action's max_blocked. The database's now is the attempt's start (the
        database clock, from the claim) plus how long the attempt ran."""
        action = self.ctx.topia.actions.get(job.action)
        limit = action.config.max_blocked if action else None
        if limit is None or job.failing_since is None or job.attempted_at is None:
            return None
        ran = time.monotonic() - held.attempt_started
        blocked = (job.attempted_at - job.failing_since).total_seconds() + ran
        if blocked <= limit:
            return None
        return f"parked: blocked its queue for {blocked:.1f}s, over max_blocked ({limit:g}s)"

    def _committed_before(self, job: Job, lease: Lease) -> bool:
        """After a rejected write: did our first try commit although its reply was lost?
        Only if the attempt is recorded under our lease: a successor that recorded it
        as "worker lost" wrote its own lease there."""
        current = self.ctx.bookkeeping(lambda c: store.job_get(c, scope=self.scope, job_id=job.id))
        return (
            current is not None
            and current.state != "running"
            and current.lease_id == lease.lease_id
            and current.attempts == job.attempts
        )

    def _next_state(self, job: Job, outcome: Outcome) -> tuple[str, float | None]:
        if outcome.ok:
            return "done", None
        if outcome.interrupted == "shutdown":
            return "pending", 0.0  # the attempt counts, but no backoff is charged
        if job.attempts >= job.max_attempts:
            return "failed", None
        return "pending", self._backoff(job)

    def _backoff(self, job: Job) -> float:
        action = self.ctx.topia.actions.get(job.action)
        if action is None or action.config.backoff is None:
            return default_backoff(job.attempts, job.max_backoff)
        try:
            return max(0.0, float(action.config.backoff(job)))
        except Exception:
            logger.exception("backoff of action %r failed; using the default", job.action)
            return default_backoff(job.attempts, job.max_backoff)

    def _call_failure_hooks(self, held: Held, job: Job, outcome: Outcome) -> None:
        """Hooks run after the failed attempt is recorded; one that raises is logged and
        noted on the job, and never stops the worker."""
        action = self.ctx.topia.actions.get(job.action)
        hooks = [h for h in (action.on_failure if action else None, self.ctx.topia.on_failure) if h]
        if not hooks:
            return
        # The hooks see the job as recorded: its error, state and next attempt.
        job = (
            self.ctx.bookkeeping(lambda c: store.job_get(c, scope=self.scope, job_id=job.id)) or job
        )
        error = outcome.exception or QueuetopiaError(first_line(outcome.error or "failed"))
        for hook in hooks:
            try:
                hook(job, error)
            except Exception as exc:
                logger.exception("on_failure hook for job %d raised", job.id)
                self._note_error(held, job, f"on_failure hook raised: {type(exc).__name__}: {exc}")

    def _note_error(self, held: Held, job: Job, note: str) -> None:
        action = self.ctx.topia.actions.get(job.action)
        # Cut first (scrubbing and redacting 10 MB would starve the heartbeats), with
        # room to spare: the final cut drops the first one's edges.
        note = capped(note, 8 * MAX_NOTE_BYTES)
        note = action.scrub(note, job.params) if action else note  # docs/security.md
        text = storable(redact(f"\n\n{note}"), MAX_NOTE_BYTES)
        self.ctx.bookkeeping(
            lambda c: store.job_note_error(
                c, scope=self.scope, lease=held.lease, job_id=job.id, note=text
            )
        )

    # -- releasing ------------------------------------------------------------------

    def _release(self, held: Held, *, exhausted: bool) -> None:
        stopping = self.ctx.stopping.is_set()

        def release(conn: Conn) -> bool:
            refreshed = store.lease_release(conn, scope=self.scope, lease=held.lease)
            if stopping and not exhausted:
                # Shutting down with work left: wake the other workers for it now.
                store.scope_notify(conn, self.scope, held.lease.queue)
            return refreshed

        refreshed = self.ctx.bookkeeping(release)
        if exhausted and not refreshed:
            # A producer holds the queue row, so its ready_at hint stays early: look
            # again after its notification or the next poll rather than spin on it.
            self.ctx.skip(held.lease.queue)
