"""What an attempt makes of its job: done, retried after a backoff, failed, or parked
(docs/retries.md, docs/blocking.md). A pure function of the job, how its attempt
ended, its action and how long the attempt ran: no database, no clock."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..backoff import LONGEST_BACKOFF, default_backoff
from ..errors import storable
from ..models import Finish, Interrupt, Job, Outcome, Verdict

if TYPE_CHECKING:
    from ..actions import Action

logger = logging.getLogger("queuetopia.worker")


def judge(job: Job, outcome: Outcome, action: Action[Any, Any] | None, ran: float) -> Finish:
    """The record of `job`'s attempt, which ended as `outcome` after `ran` seconds."""
    verdict, backoff = _verdict(job, outcome, action)
    error = None if outcome.error is None else storable(outcome.error)
    blocks = _blocks(job, verdict) and outcome.interrupted != Interrupt.SHUTDOWN
    if blocks and (over := _blocked_too_long(job, action, ran)):
        verdict, backoff = Verdict.PARKED, None
        error = over if error is None else f"{error}\n\n{over}"
    return Finish(job, verdict, error, outcome.result, backoff)


def lost(job: Job) -> Outcome:
    """How the attempt of a job left running by a vanished worker ended."""
    return Outcome(ok=False, error=f"worker lost: {job.attempted_by} stopped renewing its lease")


def not_started(job: Job) -> Finish:
    """The record of a job claimed ahead whose worker stops before starting it: its
    claim given back, due again at once, its attempt not counted (it never started),
    its error, log and failing time as they were."""
    return Finish(job, Verdict.PENDING, None, None, 0.0, started=False)


def _verdict(
    job: Job, outcome: Outcome, action: Action[Any, Any] | None
) -> tuple[Verdict, float | None]:
    if outcome.ok:
        return Verdict.DONE, None
    if outcome.snooze is not None:  # not an attempt: neither counted nor failed
        return Verdict.SNOOZED, outcome.snooze
    if outcome.interrupted == Interrupt.CANCELLED:
        return Verdict.CANCELLED, None
    if outcome.interrupted == Interrupt.SHUTDOWN:
        return Verdict.PENDING, 0.0  # the attempt counts, but no backoff is charged
    if job.attempts >= job.max_attempts:
        return Verdict.FAILED, None
    # At most a century (docs/retries.md): the outcome is written as JSON, which has
    # no infinity, and `inf` may come from a custom backoff or max_backoff.
    return Verdict.PENDING, min(_backoff(job, action), LONGEST_BACKOFF)


def _blocks(job: Job, verdict: Verdict) -> bool:
    """Does the job stay at its queue's head, holding the queue back?"""
    exhausted_blocks = verdict is Verdict.FAILED and job.on_exhausted == "block"
    return verdict in (Verdict.PENDING, Verdict.SNOOZED) or exhausted_blocks


def _backoff(job: Job, action: Action[Any, Any] | None) -> float:
    if action is None or action.config.backoff is None:
        return default_backoff(job.attempts, job.max_backoff)
    try:
        return max(0.0, float(action.config.backoff(job)))
    except Exception:
        logger.exception("backoff of action %r failed; using the default", job.action)
        return default_backoff(job.attempts, job.max_backoff)


def _blocked_too_long(job: Job, action: Action[Any, Any] | None, ran: float) -> str | None:
    """Why `job` is parked instead of retried, or None (docs/blocking.md): it has held
    its queue, since its first failed or snoozed attempt, for longer than its action's
    max_blocked. The database's now is the attempt's start (the database clock, from
    the claim) plus how long the attempt ran."""
    limit = action.config.max_blocked if action else None
    if limit is None or job.failing_since is None or job.attempted_at is None:
        return None
    blocked = (job.attempted_at - job.failing_since).total_seconds() + ran
    if blocked <= limit:
        return None
    return f"parked: blocked its queue for {blocked:.1f}s, over max_blocked ({limit:g}s)"
