"""Job, JobState and QueueInfo, and the values that cross between the worker and the
database layer (Lease, Finish, StepItem, Step): the types that cross module boundaries."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import QueuetopiaError

# An attempt, named by its job's id and the database time it started (attempted_at):
# a later attempt of the same job never has the same start.
AttemptId = tuple[int, datetime]


PERIODS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def format_rate(count: int, period: float) -> str:
    """'10/s', '100/min', '5/2h', '3/0.5s': how a rate is written (queuetopia.limits)."""
    for unit, size in PERIODS.items():
        if period == size:
            return f"{count}/{unit}"
    for unit, size in reversed(PERIODS.items()):
        if period % size == 0:
            return f"{count}/{period / size:.0f}{unit}"
    return f"{count}/{period!r}s"


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Interrupt(StrEnum):
    """Why the worker cut an attempt short."""

    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"
    LEASE_LOST = "lease lost"
    CANCELLED = "cancelled"  # an operator cancelled the running job


class Verdict(StrEnum):
    """What recording an attempt makes of its job (docs/blocking.md): done, pending
    again (a retry, or a shutdown's free re-run), failed, parked (failed out of line
    for holding its queue blocked past max_blocked), snoozed (pending again, its
    attempt not counted) or cancelled (by an operator, while it ran)."""

    DONE = "done"
    PENDING = "pending"
    FAILED = "failed"
    PARKED = "parked"
    SNOOZED = "snoozed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. `interrupted` names why the worker cut it short;
    `snooze`, the seconds the action asked to wait (docs/flow-control.md)."""

    ok: bool
    result: Any = None
    error: str | None = None
    interrupted: Interrupt | None = None
    exception: BaseException | None = None
    snooze: float | None = None

    @property
    def failed(self) -> bool:
        """A failed attempt (failure hooks, metrics, traces): not done, not snoozed,
        not cancelled by an operator."""
        return not self.ok and self.snooze is None and self.interrupted != Interrupt.CANCELLED


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


class Named(Protocol):
    """A registered action, as a JobRequest may name it instead of by its name."""

    @property
    def name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One job to enqueue: `topia.enqueue_many([JobRequest(queue, action, params), ...])`.

    Options left as None take the action's registered defaults (or the library's for
    an action not registered here). `scheduled_at` is an aware datetime or a delay;
    `unique_key` makes the enqueue return the job already in line with that key in
    the queue instead of writing a twin (docs/unique-jobs.md); `after` names the jobs
    that must be done before it starts (docs/flow-control.md)."""

    queue: str
    action: str | Named  # an action's name, or the Action itself
    params: Mapping[str, Any] = field(default_factory=dict)
    _: KW_ONLY
    scheduled_at: datetime | timedelta | None = None
    timeout: float | timedelta | None = None
    max_attempts: int | None = None
    max_backoff: float | timedelta | None = None
    unique_key: str | None = None
    # Jobs that must be done first (docs/flow-control.md): Jobs, their ids, or
    # JobRequests that come earlier in the same enqueue_many call.
    after: Sequence[Any] = ()


class Attempt(BaseModel):
    """One attempt of a job: when it started and ended, on which node, how it ended
    (`done`, `retry`, `failed`, `parked`, `interrupted`) and its error (capped)."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    started_at: datetime | None
    ended_at: datetime | None
    node: str | None
    outcome: str
    error: str | None = None


class OperatorAction(BaseModel):
    """What an operator did to a job or a queue: who, when, why."""

    model_config = ConfigDict(frozen=True)

    action: str
    by: str
    at: datetime
    reason: str | None = None


class CancelSource(Protocol):
    """What a running job's `cancel_requested` reads: its attempt's execution."""

    cancel_requested: bool


class Waiter(Protocol):
    """What `Job.wait` needs: the topia that returned the job."""

    def wait(self, job_id: int, timeout: float = 30.0) -> Any: ...

    async def wait_async(self, job_id: int, timeout: float = 30.0) -> Any: ...


class Job(BaseModel):
    """One stored call of an action. Immutable: a snapshot of its row.

    A job returned by a topia remembers it, so `job.wait()` can ask it for the
    result; a job built by hand must use `topia.wait(job.id)` (docs/results.md)."""

    model_config = ConfigDict(frozen=True)
    # Who returned the job, for `wait`: a slot, not a field (never compared, dumped or
    # copied). A pydantic private attribute would cost 3 µs at every Job made, and a
    # worker makes one per job it claims.
    __slots__ = ("_cancel_source", "_waiter_of")

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
    # Factories, not `= {}`: pydantic deep-copies a mutable default for every instance.
    meta: dict[str, Any] = Field(default_factory=dict)
    unique_key: str | None = None
    # The jobs that must be done before this one may start (docs/flow-control.md).
    depends_on: list[int] = Field(default_factory=list)
    attempt_log: list[Attempt] = Field(default_factory=list)
    operator_log: list[OperatorAction] = Field(default_factory=list)
    # True when an enqueue found an unfinished job with the same unique_key in the
    # queue and returned it instead of writing a new one (docs/unique-jobs.md).
    deduplicated: bool = False
    # Inside an action: the fencing token of the lease this attempt runs under, to pass
    # to the systems the action writes to (docs/actions.md, "Fencing tokens"). Never
    # stored; None elsewhere.
    fence: int | None = Field(default=None, exclude=True)

    @field_validator("attempt_log", "operator_log", "depends_on", mode="before")
    @classmethod
    def _empty_log(cls, value: Any) -> Any:
        """The database returns an empty log (or no dependencies) as NULL
        (queuetopia/db/queries.py)."""
        return [] if value is None else value

    @model_validator(mode="after")
    def _only_attempt(self) -> Job:
        """A job whose only attempt succeeded stores no history (that attempt is its
        attempted_at, attempted_by and done_at): show it all the same."""
        if not self.attempt_log and self.state == JobState.DONE and self.attempted_at:
            entry = Attempt(
                attempt=self.attempts,
                started_at=self.attempted_at,
                ended_at=self.done_at,
                node=self.attempted_by,
                outcome="done",
            )
            object.__setattr__(self, "attempt_log", [entry])
        return self

    def __eq__(self, other: object) -> bool:
        """Equal when the rows are: which topia returned a job does not matter."""
        if not isinstance(other, Job):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((self.id, self.updated_at))

    def bound(self, waiter: Waiter) -> Job:
        """This job, remembering what returned it (for `wait`)."""
        object.__setattr__(self, "_waiter_of", waiter)
        return self

    def watching(self, source: CancelSource) -> Job:
        """This job, as its running action sees it: `cancel_requested` reads `source`
        (the attempt's execution)."""
        object.__setattr__(self, "_cancel_source", source)
        return self

    @property
    def snoozed(self) -> bool:
        """Is the job waiting after its action snoozed (docs/flow-control.md)?"""
        last = self.attempt_log[-1] if self.attempt_log else None
        return self.state == JobState.PENDING and last is not None and last.outcome == "snoozed"

    @property
    def cancel_requested(self) -> bool:
        """Inside a running action: has an operator cancelled this attempt? Threads
        the action started are not interrupted; they can poll this at safe points
        (docs/flow-control.md). False outside an action."""
        source: CancelSource | None = getattr(self, "_cancel_source", None)
        return source is not None and source.cancel_requested

    def wait(self, timeout: float = 30.0) -> Any:
        """The job's result once it is done; see `Queuetopia.wait`."""
        return self._waiter().wait(self.id, timeout=timeout)

    async def wait_async(self, timeout: float = 30.0) -> Any:
        """`wait` for async code."""
        return await self._waiter().wait_async(self.id, timeout=timeout)

    def _waiter(self) -> Waiter:
        waiter: Waiter | None = getattr(self, "_waiter_of", None)
        if waiter is None:
            raise QueuetopiaError(
                f"job {self.id} was not returned by a topia; use topia.wait({self.id})"
            )
        return waiter


# Job.model_validate adds 2 µs of Python around the validator, and a worker or a
# producer makes a Job for every job it claims or writes.
job_from_row: Callable[[Mapping[str, Any]], Job] = Job.__pydantic_validator__.validate_python


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
    # Jobs of the queue that failed for good (attempts used up, or parked), which the
    # queue has moved past, and when the oldest of them failed.
    failed: int = 0
    oldest_failed_at: datetime | None = None
    operator_log: list[OperatorAction] = Field(default_factory=list)
    # Its head is due but waits for a rate limit's budget until then; which limits
    # (docs/flow-control.md).
    rate_limited_until: datetime | None = None
    rate_limited_by: str | None = None
    # Its head waits for these jobs (not done yet), and why, in words: "waits for job
    # 12 (failed)" (docs/flow-control.md).
    waiting_for: list[int] = Field(default_factory=list)
    held_by: str | None = None


class RateLimit(BaseModel):
    """A rate limit on the job starts of the queues matching `queues` (a glob): at most
    `count` per `period` seconds, with bursts of `burst`; each queue on its own budget,
    or, `shared`, all on one (docs/flow-control.md)."""

    model_config = ConfigDict(frozen=True)

    scope: str
    name: str
    queues: str
    shared: bool
    count: int
    period: float
    burst: int
    set_by: str | None = None
    set_at: datetime | None = None

    @property
    def rate(self) -> str:
        """The rate as it is written: '10/s', '100/min', '5/2h'."""
        return format_rate(self.count, self.period)


# -- the worker's data path (docs/design.md) ----------------------------------------


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's claim on a queue: its random id (the fence) and its token (monotonic
    per queue, for systems outside PostgreSQL)."""

    queue: str
    lease_id: UUID
    token: int


# A place in a queue's line: (scheduled_at, seq), the order jobs run in.
Position = tuple[datetime, int]


@dataclass(frozen=True, slots=True)
class Signature:
    """Who did an operator action, and why (recorded on the job or queue)."""

    by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of one attempt of `job`, to record as `state`. The attempt ran under
    the lease `job.lease_id` (a lost worker's, for a job recovered as "worker lost").
    Not `started`: a job claimed ahead that its worker gave back without running it;
    its attempt is not counted (docs/guarantees.md)."""

    job: Job
    state: Verdict
    error: str | None = None
    result: Any = None
    backoff: float | None = None
    started: bool = True


@dataclass(frozen=True, slots=True)
class StepItem:
    """What one step does to one queue (JOB_STEP): take its lease (`lease` None) or
    work under `lease`; record `finish`; with `claim`, claim the head, searched from
    `floor` (None: the start of the line), the queue's rewinds past `seen` applied.
    Items that take a queue may outnumber the worker's free slots: as many of them
    are taken, and their heads claimed, as have `claim` (one slot each).
    `zombies`: look for a job left running first. `retry`: an earlier try of this
    step may have committed with its reply lost (docs/design.md)."""

    queue: str
    lease: Lease | None
    floor: Position | None = None
    seen: int = 0
    finish: Finish | None = None
    claim: bool = False
    zombies: bool = False
    retry: bool = False


class Found(StrEnum):
    """What a step found at the head of a queue."""

    CLAIMED = "claimed"  # the head, now running under the step's lease
    HEAD = "head"  # the head as it is: not due, paused, blocked, or ours and running
    ZOMBIE = "zombie"  # a job running under a lease that is not ours: a lost worker's


@dataclass(frozen=True, slots=True)
class Step:
    """What a step did to one queue. `lease` is the lease held after it (taken, or
    kept), None if it is not ours or not live. With `taken`, `floor`, `seen` and
    `takeover` come from the lease row. `searched` says whether the head was looked
    for, from `searched_from` (None: the start of the line); `quiet`, whether no
    producer of the queue was in the middle of a transaction then (docs/design.md,
    "The floor")."""

    queue: str
    lease: Lease | None
    taken: bool
    due: bool  # a queue to take was due (taken, or left for want of a slot)
    floor: Position | None
    seen: int
    takeover: bool
    recorded: bool
    searched: bool
    searched_from: Position | None
    quiet: bool
    rewinds: int
    paused: bool
    found: Found | None
    job: Job | None
    db_now: datetime
    rated: float | None = None  # its due head waits this long for a rate limit's token
    # Its head waits for these jobs, not done when the step looked (job_await.sql).
    awaiting: list[int] | None = None
