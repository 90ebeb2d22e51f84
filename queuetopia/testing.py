"""Helpers for testing code that uses queuetopia: run due jobs synchronously
(`drain`) and check which jobs were created (`assert_job_created`,
`refute_job_created`).

`drain` is a worker that runs in the calling thread: it takes leases, claims heads,
executes and records attempts with the worker's own code, so the ordering and
blocking rules are exactly those of `topia.worker()`. Only due jobs run: a failed
attempt waits for its backoff, a job scheduled later stays scheduled, a paused
queue stays paused, and jobs created by the jobs that ran are run too if due.

    def test_signup_sends_a_welcome_mail(topia):
        signup("ada@example.com")
        assert_job_created(topia, queue="mail", action="send_mail",
                           params={"to": "ada@example.com"})
        result = drain(topia)
        assert result.done == 1
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic_core import to_jsonable_python

from .db import steps
from .events import LogObserver, Observers
from .models import Finish, Found, Job, JobState, Lease, Outcome, Position, Step, StepItem, Verdict
from .validation import check_name
from .worker import hooks
from .worker.executor import execute, execute_async
from .worker.heartbeat import Heartbeat
from .worker.holds import Hold, Holds, node_identity
from .worker.verdict import judge, lost

if TYPE_CHECKING:
    from queuetopia import Queuetopia

__all__ = ["DrainResult", "assert_job_created", "drain", "refute_job_created"]

T = TypeVar("T")

# Enough for any test; a job that keeps enqueuing due work into its own queue would
# otherwise never let `drain` return.
DEFAULT_MAX_JOBS = 10_000


@dataclass(frozen=True)
class DrainResult:
    """What `drain` ran: each attempt's job as that attempt left it, in run order."""

    jobs: tuple[Job, ...] = ()

    @property
    def ran(self) -> int:
        """Attempts run."""
        return len(self.jobs)

    @property
    def done(self) -> int:
        """Attempts that succeeded."""
        return self._count(JobState.DONE)

    @property
    def failed(self) -> int:
        """Attempts that failed and used up their job's attempts."""
        return self._count(JobState.FAILED)

    @property
    def retried(self) -> int:
        """Attempts that failed and will be retried after their backoff."""
        return self._count(JobState.PENDING)

    def _count(self, state: JobState) -> int:
        return sum(1 for job in self.jobs if job.state == state)

    def __repr__(self) -> str:
        return (
            f"DrainResult(ran={self.ran}, done={self.done}, failed={self.failed}, "
            f"retried={self.retried})"
        )


def drain(
    topia: Queuetopia, queue: str | None = None, *, max_jobs: int = DEFAULT_MAX_JOBS
) -> DrainResult:
    """Run due jobs of `topia` (only of `queue`, if given) in the calling thread until
    none is due, and return what ran. Stops after `max_jobs` attempts."""
    return _Drain(topia, queue).run(max_jobs)


class _Drain:
    """A worker with one slot whose loop is the calling thread: each turn takes the
    queue that has waited longest (as a worker does), runs one attempt of its head
    with the worker's executor, records it with the worker's step, and gives the
    queue back."""

    def __init__(self, topia: Queuetopia, queue: str | None) -> None:
        self.topia = topia
        self.engine = topia.engine
        self.scope = topia.scope
        self.queues = None if queue is None else [check_name("queue", queue)]
        self.node, self.owner = node_identity("drain")
        self.attempts = _Attempts()
        self.observers = Observers([LogObserver(), self.attempts])
        self.holds = Holds(self.engine.settings.lock_ttl)
        self.skipped: set[str] = set()  # queues found with nothing due now

    def run(self, max_jobs: int) -> DrainResult:
        s = self.engine.settings
        heartbeat = Heartbeat(self.engine.database, s.scope, s.lock_ttl, self.holds)
        heartbeat.start()
        jobs: list[Job] = []
        try:
            while len(self.attempts.started) < max_jobs:
                before = len(self.attempts.started)
                if not self._next_turn():
                    break
                for job_id in self.attempts.started[before:]:
                    job = self.topia.get_job(job_id)  # as this attempt left it
                    if job is not None:
                        jobs.append(job)
        finally:
            heartbeat.stop()
        return DrainResult(tuple(jobs))

    def _next_turn(self) -> bool:
        """Take the longest-waiting due queue and run its head; False if none is due."""
        with self.topia.connection() as conn:
            found = steps.queue_due(
                conn, scope=self.scope, limit=1, queues=self.queues, skip=sorted(self.skipped)
            )
        if not found:
            return False
        queue = found[0]
        started = time.monotonic()
        step = self._step(StepItem(queue, None, claim=True))
        if step.lease is None:
            self.skipped.add(queue)  # another worker holds it
            return True
        hold = self.holds.take(step.lease, started, step.floor, step.seen)
        try:
            if not self._attempt(hold, step):
                self.skipped.add(queue)
        finally:
            self.holds.give_back(hold)
            with self.topia.connection() as conn:
                steps.lease_release(conn, scope=self.scope, releases=[_release(hold)])
        return True

    def _attempt(self, hold: Hold, step: Step) -> bool:
        """Run the head `step` claimed, recovering a vanished worker's job first (its
        attempt recorded as "worker lost"); whether an attempt ran."""
        hold.searched(step)
        job = step.job
        if job is not None and job.state is JobState.RUNNING and step.found is not Found.CLAIMED:
            gone = lost(job)
            finish = judge(job, gone, self._action(job), 0.0)
            if self._record(hold, finish):
                self._failed(hold, finish, gone)
            step = self._step(StepItem(hold.queue, hold.lease, hold.floor, hold.seen, claim=True))
            hold.searched(step)
            job = step.job
        if step.found is not Found.CLAIMED or job is None:
            return False
        self.observers.job_started(job)
        started = time.monotonic()
        outcome = self._execute(hold, job)
        ran = time.monotonic() - started
        self.observers.job_ended(job, outcome, ran)
        finish = judge(job, outcome, self._action(job), ran)
        if self._record(hold, finish) and outcome.failed:
            self._failed(hold, finish, outcome)
        return True

    def _failed(self, hold: Hold, finish: Finish, outcome: Outcome) -> None:
        """As a worker does after a failed attempt is recorded: tell the observers of
        a parked job, call the failure hooks and note on the job those that raised."""
        job = finish.job
        if finish.state is Verdict.PARKED:
            self.observers.job_parked(job)
        hooked = self.engine.registry.failure_hooks(job.action)
        if not hooked:
            return
        recorded = self.topia.get_job(job.id) or job
        for note in hooks.call(hooked, recorded, hooks.error_of(outcome)):
            text = hooks.note_text(self._action(job), job, note)
            with self.topia.connection() as conn:
                steps.job_note_error(
                    conn, scope=self.scope, lease=hold.lease, job_id=job.id, note=text
                )

    def _execute(self, hold: Hold, job: Job) -> Outcome:
        action = self._action(job)
        limit = self.engine.settings.max_result_bytes
        if action is not None and action.schema.takes_job:
            job = hold.fenced(job)

        def on_start(execution: Any) -> None:
            hold.started(execution, job)

        try:
            if action is not None and action.is_async:
                return _run_async(execute_async(job, action, on_start, limit))
            return execute(job, action, on_start, limit)
        finally:
            hold.ended()

    def _record(self, hold: Hold, finish: Finish) -> bool:
        return self._step(StepItem(hold.queue, hold.lease, hold.floor, hold.seen, finish)).recorded

    def _step(self, item: StepItem) -> Step:
        s = self.engine.settings
        # The topia's own connections, and no retrying: a test should fail at once.
        with self.topia.connection() as conn:
            [step] = steps.job_step(
                conn, scope=s.scope, owner=self.owner, node=self.node, ttl=s.lock_ttl, items=[item]
            )
        return step

    def _action(self, job: Job) -> Any:
        return self.engine.registry.get(job.action)


def _release(hold: Hold) -> tuple[Lease, Position | None, int]:
    return hold.lease, hold.floor, hold.seen


def _run_async(coroutine: Any) -> Outcome:
    """An async action's attempt, on a loop of its own in this thread."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)  # type: ignore[no-any-return]
    finally:
        loop.close()


class _Attempts:
    """An observer noting the id of each job whose attempt starts."""

    def __init__(self) -> None:
        self.started: list[int] = []

    def job_started(self, job: Job) -> None:
        self.started.append(job.id)

    def job_ended(self, job: Job, outcome: Outcome, seconds: float) -> None:
        pass

    def lease_lost(self, queue: str) -> None:
        pass


# -- assertions ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Criteria:
    queue: str | None
    action: str | None
    state: JobState | str | None
    params: Any  # the wanted params in their stored (JSON) form, or None

    def matches(self, job: Job) -> bool:
        return self.params is None or _contains(job.params, self.params)

    def describe(self) -> str:
        named = (("queue", self.queue), ("action", self.action), ("state", self.state))
        parts = [f"{name}={str(value)!r}" for name, value in named if value is not None]
        if self.params is not None:
            parts.append(f"params containing {json.dumps(self.params, sort_keys=True)}")
        return ", ".join(parts) or "any job"


def assert_job_created(
    topia: Queuetopia,
    queue: str | None = None,
    action: str | None = None,
    params: Mapping[str, Any] | None = None,
    count: int = 1,
    *,
    state: JobState | str | None = None,
) -> list[Job]:
    """Assert that exactly `count` jobs of the topia's scope match, and return them.

    `params` matches as a subset: every key given must be there with an equal value
    (dicts inside params match as subsets too). Jobs in any state match unless
    `state` is given. The failure message lists the jobs that exist."""
    wanted = None if params is None else to_jsonable_python(params)
    criteria = _Criteria(queue, action, state, wanted)
    every = _all_jobs(topia, criteria)
    matching = [job for job in every if criteria.matches(job)]
    if len(matching) != count:
        raise AssertionError(
            f"expected {count} job(s) matching {criteria.describe()}, found {len(matching)}"
            + _listing(topia)
        )
    return matching


def refute_job_created(
    topia: Queuetopia,
    queue: str | None = None,
    action: str | None = None,
    params: Mapping[str, Any] | None = None,
    *,
    state: JobState | str | None = None,
) -> None:
    """Assert that no job of the topia's scope matches (same matching as
    `assert_job_created`)."""
    assert_job_created(topia, queue, action, params, count=0, state=state)


def _all_jobs(topia: Queuetopia, criteria: _Criteria) -> list[Job]:
    jobs: list[Job] = []
    page = 1000
    while True:
        batch = topia.list_jobs(
            queue=criteria.queue,
            action=criteria.action,
            state=criteria.state,
            limit=page,
            offset=len(jobs),
        )
        jobs.extend(batch)
        if len(batch) < page:
            return jobs


def _listing(topia: Queuetopia) -> str:
    """The jobs that exist in the scope, so a failure shows what was created instead."""
    shown = 50
    existing = topia.list_jobs(limit=shown + 1)
    if not existing:
        return f"; scope {topia.scope!r} has no jobs"
    lines = [_line(topia, job) for job in existing[:shown]]
    if len(existing) > shown:
        lines.append("…")
    return f"; jobs in scope {topia.scope!r}:\n" + "\n".join(lines)


def _line(topia: Queuetopia, job: Job) -> str:
    params = json.dumps(topia.shown_params(job), sort_keys=True, ensure_ascii=False)
    return (
        f"  #{job.id} queue={job.queue!r} action={job.action!r} state={job.state.value} "
        f"params={params}"
    )


def _contains(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(
            key in actual and _contains(actual[key], value) for key, value in wanted.items()
        )
    return bool(actual == wanted)
