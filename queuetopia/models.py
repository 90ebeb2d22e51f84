"""Job, JobState and QueueInfo: the types that cross module boundaries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class QueueStatus(StrEnum):
    RUNNING = "running"
    BLOCKED = "blocked"
    WAITING = "waiting"
    PAUSED = "paused"
    IDLE = "idle"


class LeaseInfo(BaseModel):
    """A live claim of a worker on a queue: who holds it, since when, until when."""

    model_config = ConfigDict(frozen=True)

    scope: str
    queue: str
    owner: str
    token: int
    acquired_at: datetime
    locked_until: datetime
    db_now: datetime


class MinuteCounts(BaseModel):
    """Jobs done and failed during one minute (see `Queuetopia.job_counts_per_minute`)."""

    model_config = ConfigDict(frozen=True)

    minute: datetime
    done: int
    failed: int


class Job(BaseModel):
    """One stored call of an action. Immutable: a snapshot of its row."""

    model_config = ConfigDict(frozen=True)

    id: int
    scope: str
    queue: str
    seq: int
    action: str
    params: dict[str, Any]
    state: JobState
    on_exhausted: str
    attempts: int
    max_attempts: int
    timeout: float
    max_backoff: float
    scheduled_at: datetime
    attempted_at: datetime | None
    attempted_by: str | None
    next_attempt_at: datetime | None
    failing_since: datetime | None
    done_at: datetime | None
    error: str | None
    result: Any
    lease_id: UUID | None
    inserted_at: datetime
    updated_at: datetime
    meta: dict[str, Any] = {}


class QueueInfo(BaseModel):
    """The state of one queue, as an operator sees it."""

    model_config = ConfigDict(frozen=True)

    scope: str
    queue: str
    status: QueueStatus
    paused: bool
    pending: int
    head: Job | None
    blocked_since: datetime | None
    last_error: str | None
    next_attempt_at: datetime | None
    locked_by: str | None
    locked_until: datetime | None
