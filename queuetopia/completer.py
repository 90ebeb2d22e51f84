"""Records what became of each attempt, and hands back the queue's next head.

The completer decides a job's verdict (done, retried after its backoff, failed,
parked), writes it under the job's lease in a group commit with the outcomes of the
other runners (finisher.py) and claims the queue's next head in the same statement.
It owns its connections and their retries (a Bookkeeper), so a runner hands it an
outcome and gets the next job back; nothing calls back into the worker. The
first head of a turn is claimed here too, recovering a lost worker's attempt."""

from __future__ import annotations

import logging
import threading
import time

from .backoff import LONGEST_BACKOFF, default_backoff
from .bookkeeper import Bookkeeping
from .db import store
from .db.store import Conn, Finish, Lease
from .errors import MAX_NOTE_BYTES, QueuetopiaError, capped, redact, storable
from .events import Observers, first_line
from .finisher import Finisher
from .leases import Held
from .models import Interrupt, Job, JobState, Outcome, Verdict
from .registry import Registry

logger = logging.getLogger("queuetopia.worker")


class Completer:
    def __init__(
        self,
        scope: str,
        node: str,
        registry: Registry,
        bookkeeping: Bookkeeping,
        observers: Observers,
        stopping: threading.Event,
    ) -> None:
        self.scope, self.node, self.registry = scope, node, registry
        self._book, self._observers, self._stopping = bookkeeping, observers, stopping
        self._finisher = Finisher(self._finish_batch)

    def _finish_batch(self, batch: list[Finish]) -> list[tuple[bool, Job | None]]:
        return self._book(
            lambda c: store.job_finish_many(c, scope=self.scope, node=self.node, batch=batch)
        )

    def abandon(self, job: Job) -> None:
        """The runner given `job` will not report its outcome after all."""
        self._finisher.abandon(job)

    # -- the first head ---------------------------------------------------------------

    def first(self, held: Held) -> Job | None:
        """The job to run first under `held`, recovering a lost worker's job on the way;
        None when the queue has nothing runnable now or the lease is gone."""
        while not held.lost and not self._stopping.is_set():
            claim = self._book(
                lambda c: store.job_claim_head(
                    c, scope=self.scope, lease=held.lease, node=self.node
                )
            )
            if not claim.leased:
                held.lose()
                return None
            head = claim.head
            ours = head is not None and head.lease_id == held.lease.lease_id
            if claim.claimed or (head and head.state == JobState.RUNNING and ours):
                return head  # ours, possibly claimed by a try whose reply was lost
            if head is None or head.state != JobState.RUNNING:
                return None  # empty, not due, paused, or blocked for good
            lost = Outcome(
                ok=False, error=f"worker lost: {head.attempted_by} stopped renewing its lease"
            )
            held.attempt_started = time.monotonic()
            self.complete(held, head, lost, claim_next=False)
        return None

    # -- outcomes ------------------------------------------------------------------

    def complete(self, held: Held, job: Job, outcome: Outcome, *, claim_next: bool) -> Job | None:
        """Record the outcome; return the next job claimed with it, if any."""
        verdict, backoff = self._verdict(job, outcome)
        error = None if outcome.error is None else storable(outcome.error)
        blocks = self._blocks(job, verdict) and outcome.interrupted != Interrupt.SHUTDOWN
        if blocks and (over := self._blocked_too_long(held, job)):
            verdict, backoff, error = Verdict.PARKED, None, f"{error}\n\n{over}"
        recorded, claimed = self._finisher.finish(
            Finish(held.lease, job, verdict, error, outcome.result, backoff, claim_next)
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
            claimed = self.first(held) if claim_next else None
        if verdict is Verdict.PARKED:
            logger.warning("parked job %d of queue %r: %s", job.id, job.queue, error)
            self._observers.job_parked(job)
        if not outcome.ok:
            self._call_failure_hooks(held, job, outcome)
        return claimed

    def _verdict(self, job: Job, outcome: Outcome) -> tuple[Verdict, float | None]:
        if outcome.ok:
            return Verdict.DONE, None
        if outcome.interrupted == Interrupt.SHUTDOWN:
            return Verdict.PENDING, 0.0  # the attempt counts, but no backoff is charged
        if job.attempts >= job.max_attempts:
            return Verdict.FAILED, None
        # At most a century (docs/retries.md): the outcome is written as JSON, which has
        # no infinity, and `inf` may come from a custom backoff or max_backoff.
        return Verdict.PENDING, min(self._backoff(job), LONGEST_BACKOFF)

    @staticmethod
    def _blocks(job: Job, verdict: Verdict) -> bool:
        """Does the job stay at its queue's head, holding the queue back?"""
        exhausted_blocks = verdict is Verdict.FAILED and job.on_exhausted == "block"
        return verdict is Verdict.PENDING or exhausted_blocks

    def _backoff(self, job: Job) -> float:
        action = self.registry.get(job.action)
        if action is None or action.config.backoff is None:
            return default_backoff(job.attempts, job.max_backoff)
        try:
            return max(0.0, float(action.config.backoff(job)))
        except Exception:
            logger.exception("backoff of action %r failed; using the default", job.action)
            return default_backoff(job.attempts, job.max_backoff)

    def _blocked_too_long(self, held: Held, job: Job) -> str | None:
        """Why `job` is parked instead of retried, or None (docs/blocking.md): it
        has held its queue blocked, since its first failed attempt, for longer than
        its action's max_blocked. The database's now is the attempt's start (the
        database clock, from the claim) plus how long the attempt ran."""
        action = self.registry.get(job.action)
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
        current = self._book(lambda c: store.job_get(c, scope=self.scope, job_id=job.id))
        return (
            current is not None
            and current.state != JobState.RUNNING
            and current.lease_id == lease.lease_id
            and current.attempts == job.attempts
        )

    # -- failure hooks ---------------------------------------------------------------

    def _call_failure_hooks(self, held: Held, job: Job, outcome: Outcome) -> None:
        """Hooks run after the failed attempt is recorded; one that raises is logged and
        noted on the job, and never stops the worker."""
        hooks = self.registry.failure_hooks(job.action)
        if not hooks:
            return
        # The hooks see the job as recorded: its error, state and next attempt.
        job = self._book(lambda c: store.job_get(c, scope=self.scope, job_id=job.id)) or job
        error = outcome.exception or QueuetopiaError(first_line(outcome.error or "failed"))
        for hook in hooks:
            try:
                hook(job, error)
            except Exception as exc:
                logger.exception("on_failure hook for job %d raised", job.id)
                self._note_error(held, job, f"on_failure hook raised: {type(exc).__name__}: {exc}")

    def _note_error(self, held: Held, job: Job, note: str) -> None:
        action = self.registry.get(job.action)
        # Cut first (scrubbing and redacting 10 MB would starve the heartbeats), with
        # room to spare: the final cut drops the first one's edges.
        note = capped(note, 8 * MAX_NOTE_BYTES)
        note = action.scrub(note, job.params) if action else note  # docs/security.md
        text = storable(redact(f"\n\n{note}"), MAX_NOTE_BYTES)
        self._book(
            lambda c: store.job_note_error(
                c, scope=self.scope, lease=held.lease, job_id=job.id, note=text
            )
        )

    # -- giving the queue back ---------------------------------------------------------

    def release(self, held: Held, *, wake_others: bool) -> bool:
        """Release the lease; with `wake_others` (shutting down with work left), wake
        the other workers for the queue now. Whether the queue's hint was refreshed."""

        def release(conn: Conn) -> bool:
            refreshed = store.lease_release(conn, scope=self.scope, lease=held.lease)
            if wake_others:
                store.scope_notify(conn, self.scope, held.lease.queue)
            return refreshed

        return self._book(release)
