"""Failure hooks (`on_failure`): called after each failed attempt is recorded, with
the job as recorded. A hook that raises is logged and noted on the job's error; it
never stops the worker (docs/actions.md)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import MAX_NOTE_BYTES, QueuetopiaError, capped, redact, storable
from ..events import first_line
from ..models import Job, Outcome

if TYPE_CHECKING:
    from ..actions import Action, FailureHook

logger = logging.getLogger("queuetopia.worker")


def error_of(outcome: Outcome) -> BaseException:
    """What the hooks are given as the attempt's error."""
    return outcome.exception or QueuetopiaError(first_line(outcome.error or "failed"))


def call(hooks: list[FailureHook], job: Job, error: BaseException) -> list[str]:
    """Call each hook; the note of each one that raised (in a thread of the runner
    pool: hooks are user code, and may block)."""
    notes: list[str] = []
    for hook in hooks:
        try:
            hook(job, error)
        except Exception as exc:
            logger.exception("on_failure hook for job %d raised", job.id)
            notes.append(f"on_failure hook raised: {type(exc).__name__}: {exc}")
    return notes


def note_text(action: Action[Any, Any] | None, job: Job, note: str) -> str:
    """The note as appended to the job's error: cut, scrubbed and redacted."""
    # Cut first (scrubbing and redacting 10 MB would starve the heartbeats), with room
    # to spare: the final cut drops the first one's edges.
    note = capped(note, 8 * MAX_NOTE_BYTES)
    note = action.scrub(note, job.params) if action else note  # docs/security.md
    return storable(redact(f"\n\n{note}"), MAX_NOTE_BYTES)
