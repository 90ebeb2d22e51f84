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

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic_core import to_jsonable_python

from .completer import Completer
from .db import store
from .db.store import Conn
from .events import LogObserver, Observers
from .fairness import Skips, Turns
from .heartbeat import Heartbeat
from .leases import Leases, node_identity
from .models import Job, JobState, Outcome
from .runner import Runner
from .validation import check_name

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
    """A worker with one slot whose loop and runner are the calling thread.

    Each turn leases the queue that has waited longest (as a worker does), runs one
    attempt of its head with the worker's Runner, and gives the queue back."""

    def __init__(self, topia: Queuetopia, queue: str | None) -> None:
        self.topia = topia
        self.engine = engine = topia.engine
        self.queues = None if queue is None else [check_name("queue", queue)]
        self.node, self.owner = node_identity("drain")
        self.attempts = _Attempts()
        observers = Observers([LogObserver(), self.attempts])
        self.leases = Leases(engine.settings.lock_ttl, observers)
        self.skips = Skips(float("inf"))  # a queue found not runnable stays skipped
        stopping = threading.Event()
        completer = Completer(
            topia.scope, self.node, engine.registry, self._bookkeeping, observers, stopping
        )
        self.runner = Runner(
            completer,
            engine.registry,
            turns=Turns(one_job=True),
            skips=self.skips,
            stopping=stopping,
            observers=observers,
            max_result_bytes=engine.settings.max_result_bytes,
        )

    def run(self, max_jobs: int) -> DrainResult:
        s = self.engine.settings
        heartbeat = Heartbeat(self.engine.database, s.scope, s.lock_ttl, self.leases)
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
        """Lease the longest-waiting due queue and run its head; False if none is due."""
        started = time.monotonic()
        taken, _ = self._bookkeeping(
            lambda c: store.lease_acquire(
                c,
                scope=self.topia.scope,
                owner=self.owner,
                limit=1,
                ttl=self.engine.settings.lock_ttl,
                queues=self.queues,
                skip=sorted(self.skips.active()),
                node=self.node,
            )
        )
        if not taken:
            return False
        [(lease, first)] = taken
        held = self.leases.take(lease, started)
        try:
            self.runner.drain(held, first)
        finally:
            self.leases.give_back(held)
        return True

    def _bookkeeping(self, fn: Callable[[Conn], T]) -> T:
        # The topia's own connections, and no retrying: a test should fail at once.
        with self.topia.connection() as conn:
            return fn(conn)


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
