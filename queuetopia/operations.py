"""Operator actions over many jobs or queues at once (docs/operations.md): the
selection they take, and who is recorded as having done them.

A selection names jobs by queue glob (`webhooks:*`), states, action and how recently
they changed; the operator calls first select (what `--dry-run` prints), then change
exactly the jobs selected that still allow the change."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .errors import ValidationError
from .models import JobState, Signature
from .validation import MAX_REASON_BYTES, check_name, check_text

# Most jobs one selection may name: bigger changes are made in several calls.
MAX_SELECTION = 10_000

# The states each change applies to.
RETRYABLE = (JobState.PENDING, JobState.FAILED, JobState.CANCELLED)
CANCELLABLE = (JobState.PENDING, JobState.FAILED, JobState.RUNNING)


@dataclass(frozen=True)
class Selection:
    """Jobs of the topia's scope: in queues matching `queue_pattern` (a glob: `*`
    any text, `?` one character; None: every queue), in one of `states`, of
    `action` (None: any), changed at or after `since` (an aware datetime, or a
    duration back from the database's now; None: any time), at most `limit`."""

    queue_pattern: str | None = None
    states: tuple[JobState | str, ...] = (JobState.FAILED,)
    action: str | None = None
    since: datetime | timedelta | None = None
    limit: int = 1000

    def params(self, allowed: tuple[JobState, ...], verb: str) -> dict[str, Any]:
        """The parameters of JOB_SELECT; ValidationError for a selection that makes
        no sense, or names states the change does not apply to."""
        states = [state(s) for s in self.states]
        if not states:
            raise ValidationError("a selection needs at least one state")
        refused = [s.value for s in states if s not in allowed]
        if refused:
            can = ", ".join(s.value for s in allowed)
            raise ValidationError(f"cannot {verb} {', '.join(refused)} jobs (only {can})")
        if self.action is not None:
            check_name("action", self.action)
        if not isinstance(self.limit, int) or not 1 <= self.limit <= MAX_SELECTION:
            raise ValidationError(f"limit must be 1 to {MAX_SELECTION}, got {self.limit!r}")
        since, since_secs = _since(self.since)
        return {
            "pattern": None if self.queue_pattern is None else like(self.queue_pattern),
            "states": [s.value for s in states],
            "action": self.action,
            "since": since,
            "since_secs": since_secs,
            "limit": self.limit,
        }


def state(value: JobState | str) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        raise ValidationError(f"unknown job state {value!r}") from None


def _since(value: datetime | timedelta | None) -> tuple[datetime | None, float | None]:
    if value is None:
        return None, None
    if isinstance(value, timedelta):
        return None, value.total_seconds()
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value, None
    raise ValidationError(f"since must be an aware datetime or a timedelta, got {value!r}")


def like(glob: str) -> str:
    """A queue glob as a LIKE pattern: `*` any text, `?` one character."""
    check_text("queue pattern", glob)
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def signature(by: str | None, reason: str | None) -> Signature:
    """Who is recorded as doing an operator action: `by`, else the OS user."""
    who = by if by is not None else operator()
    check_text("by", who)
    if reason is not None:
        check_text("reason", reason, MAX_REASON_BYTES)  # docs/decisions.md, "Sizes"
    return Signature(who, reason)


def operator() -> str:
    """The OS user running this process ('unknown' when it has none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
