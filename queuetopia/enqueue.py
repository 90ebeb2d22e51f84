"""The one enqueue path: `JobRequest`s validated like `.delay` and written for any
number of queues and actions in one statement (docs/enqueue.md).

`prepare` checks every request before anything is written (one bad request writes
nothing) and builds the statement's arrays; `insert` runs it and hands back one Job
per request, in request order. `.delay`, `delay_many`, `create_job`, the CLI's
`enqueue` and periodic jobs all come through here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from .actions import Action, ActionConfig, JobOptions
from .db import store
from .db.connections import Pools, is_async_connection, is_sync_connection
from .db.notify import notify_payload
from .db.rows import AsyncConn, Conn, joined_transaction, joined_transaction_async
from .durations import optional_seconds
from .errors import DatabaseConflict, ValidationError
from .models import Job, JobRequest, JobState, Waiter, job_from_row
from .registry import Registry
from .tracing import enqueue_span
from .validation import check_name, params_json


@dataclass
class Batch:
    """The arrays of JOB_INSERT_MANY, and how its rows map back to the requests."""

    scope: str
    columns: dict[str, list[Any]]
    # Per request: (queue, position among the jobs of its queue written by this call),
    # or, for a request whose unique key an earlier request of the call took, the
    # index of that request.
    slots: list[tuple[str, int] | int]
    keys: dict[tuple[str, int], str]  # (queue, position) -> unique_key
    index: dict[tuple[str, int], int]  # (queue, position) -> its element of `columns`
    meta: dict[str, Any] = field(default_factory=dict)
    depends: set[int] = field(default_factory=set)  # every job id named by `after`

    @property
    def queue_label(self) -> str:
        """The queue of the batch, or '*' when it spans several (for traces)."""
        queues = set(self.columns["queues"])
        return queues.pop() if len(queues) == 1 else "*"

    @property
    def uniform(self) -> bool:
        """Do the jobs differ only in their params, and name no job to wait for? Then
        JOB_INSERT_UNIFORM writes them from one value for each other column."""
        return self.columns["depends_on"][0] is None and all(
            values.count(values[0]) == len(values)
            for name, values in self.columns.items()
            if name != "params"
        )

    def params(self, meta: dict[str, Any], *, uniform: bool) -> dict[str, Any]:
        self.meta = meta
        columns: dict[str, Any] = self.columns
        if uniform:
            columns = {name: values[0] for name, values in columns.items()}
        return {
            **columns,
            "params": self.columns["params"],  # JSON texts, each validated already
            "scope": self.scope,
            "meta": meta,
            "wake": notify_payload(self.scope, sorted(set(self.columns["queues"]))),
        }

    def written(self, rows: list[dict[str, Any]]) -> dict[tuple[str, int], Job]:
        """The jobs written, by (queue, position), from the columns the database made
        (JOB_INSERT_MANY) and the input: the rows as `get_job` reads them (tested)."""
        jobs: dict[tuple[str, int], Job] = {}
        for row in rows:
            slot = (row["queue"], int(row.pop("position")))
            jobs[slot] = self._job(self.index[slot], row)
        return jobs

    def _job(self, k: int, row: dict[str, Any]) -> Job:
        c = self.columns
        if c["depends_on"][k] is not None:  # almost never: the default otherwise
            row["depends_on"] = [int(i) for i in c["depends_on"][k][1:-1].split(",")]
        return job_from_row(
            {
                **row,
                **_FRESH,
                "scope": self.scope,
                "action": c["actions"][k],
                "on_exhausted": c["on_exhausted"][k],
                "max_attempts": c["max_attempts"][k],
                "timeout": c["timeouts"][k],
                "max_backoff": c["max_backoffs"][k],
                "meta": self.meta,
                "unique_key": c["unique_keys"][k],
            }
        )

    def missing(self, written: dict[tuple[str, int], Job]) -> list[tuple[str, str]]:
        """(queue, unique_key) of the requests whose jobs were not written."""
        return [(slot[0], key) for slot, key in self.keys.items() if slot not in written]

    def assemble(self, written: dict[tuple[str, int], Job], existing: list[Job]) -> list[Job]:
        held = {(job.queue, job.unique_key): job for job in existing}
        jobs: list[Job] = []
        for slot in self.slots:
            if isinstance(slot, int):
                jobs.append(jobs[slot].model_copy(update={"deduplicated": True}))
            elif slot in written:
                jobs.append(written[slot])
            else:
                jobs.append(self._holder(held, slot))
        return jobs

    def _holder(self, held: dict[tuple[str, str | None], Job], slot: tuple[str, int]) -> Job:
        key = self.keys[slot]
        job = held.get((slot[0], key))
        if job is None:
            # The job holding the key finished between the two statements (or the
            # caller's transaction cannot see it yet): the caller may simply retry.
            raise DatabaseConflict(
                f"the job holding unique key {key!r} in queue {slot[0]!r} ended while "
                "this enqueue ran; enqueue again"
            )
        return job.model_copy(update={"deduplicated": True})


# The columns of a job just written that no input sets (their defaults in migrations/).
_FRESH: dict[str, Any] = {
    "state": JobState.PENDING,
    "attempts": 0,
    "attempted_at": None,
    "attempted_by": None,
    "next_attempt_at": None,
    "failing_since": None,
    "done_at": None,
    "error": None,
    "result": None,
    "lease_id": None,
}


def prepare(
    scope: str,
    actions: Mapping[str, Action[Any, Any]],
    max_params_bytes: int,
    requests: Sequence[JobRequest],
    *,
    label: bool,
) -> Batch:
    """Validate every request and build the batch; raise ValidationError (naming the
    request when `label`) before anything is written."""
    if not isinstance(requests, Sequence) or isinstance(requests, str | bytes):
        raise ValidationError("enqueue_many takes a list of JobRequest")
    builder = _Builder(scope, actions, max_params_bytes)
    for index, request in enumerate(requests):
        try:
            builder.add(request)
        except ValidationError as exc:
            if not label or len(requests) == 1:
                raise
            raise ValidationError(f"item {index}: {exc}", exc.fields) from exc
    return builder.done()


class _Builder:
    def __init__(
        self, scope: str, actions: Mapping[str, Action[Any, Any]], max_params_bytes: int
    ) -> None:
        self.actions = actions
        self.max_params_bytes = max_params_bytes
        self.batch = Batch(scope, {name: [] for name in _COLUMNS}, [], {}, {})
        self._rows: list[tuple[Any, ...]] = []
        self._counts: dict[str, int] = {}
        self._configs: dict[tuple[Any, ...], ActionConfig] = {}
        self._names: set[str] = set()
        self._unique: dict[tuple[str, str], int] = {}

    def add(self, request: JobRequest) -> None:
        if not isinstance(request, JobRequest):
            raise ValidationError(f"expected a JobRequest, got {type(request).__name__}")
        queue = self._name("queue", request.queue)
        registered = self._action(request.action)
        action = registered.name if registered else self._name("action", request.action)
        text = self._params(registered, request.params)
        config = self._config(action, registered, request)
        at, delay = schedule(request.scheduled_at)
        key = None if request.unique_key is None else check_name("unique_key", request.unique_key)
        if key is not None and (queue, key) in self._unique:
            self.batch.slots.append(self._unique[queue, key])  # the same call's twin
            return
        position = self._counts[queue] = self._counts.get(queue, 0) + 1
        if key is not None:
            self._unique[queue, key] = len(self.batch.slots)
            self.batch.keys[queue, position] = key
        self.batch.slots.append((queue, position))
        self.batch.index[queue, position] = len(self._rows)
        c = config
        timeout, backoff = float(c.timeout), float(c.max_backoff)
        after = None
        if request.after is not NO_JOBS:  # almost never: nothing to do per job otherwise
            depends = _depends(request.after)
            self.batch.depends.update(depends)
            after = "{" + ",".join(map(str, depends)) + "}" if depends else None
        self._rows.append(
            (queue, action, text, at, delay, timeout, c.max_attempts, backoff, c.on_exhausted, key,
             after)
        )  # fmt: skip

    def done(self) -> Batch:
        """The batch, its columns made from the rows (one transposition, in C)."""
        if self._rows:
            columns = zip(_COLUMNS, zip(*self._rows, strict=True), strict=True)
            self.batch.columns = {name: list(values) for name, values in columns}
        return self.batch

    def _name(self, kind: str, value: object) -> str:
        if not isinstance(value, str) or value not in self._names:
            value = check_name(kind, value)
            self._names.add(value)
        return value

    def _action(self, named: object) -> Action[Any, Any] | None:
        """The registered action a request names (by name, or as the Action)."""
        if isinstance(named, Action):
            return named
        return self.actions.get(named) if isinstance(named, str) else None

    def _params(self, registered: Action[Any, Any] | None, params: Mapping[str, Any]) -> str:
        """The params as the JSON text stored, serialised once, here, and sent as is:
        validated against the action's signature if it is registered here."""
        if not isinstance(params, Mapping):
            raise ValidationError("params must be a dict")
        if registered is not None:
            return registered.serialise(params)
        return params_json(dict(params), self.max_params_bytes)

    def _config(
        self, action: str, registered: Action[Any, Any] | None, request: JobRequest
    ) -> ActionConfig:
        options = (request.timeout, request.max_attempts, request.max_backoff)
        cached = self._configs.get((action, *options))
        if cached is None:
            base = registered.config if registered else ActionConfig()
            cached = base.resolve(
                JobOptions(
                    optional_seconds(request.timeout),
                    request.max_attempts,
                    optional_seconds(request.max_backoff),
                )
            )
            self._configs[(action, *options)] = cached
        return cached


_COLUMNS = (
    "queues",
    "actions",
    "params",
    "ats",
    "delays",
    "timeouts",
    "max_attempts",
    "max_backoffs",
    "on_exhausted",
    "unique_keys",
    "depends_on",
)


NO_JOBS: tuple[()] = ()  # the default `after` (the one empty tuple): no job to wait for


def _depends(after: object) -> list[int]:
    """The job ids `after` names (Jobs or ids), sorted, each once; ValidationError for
    anything else (a JobRequest is resolved to its id before this, by `waves`)."""
    if isinstance(after, str | bytes) or not isinstance(after, Sequence):
        raise ValidationError(f"after takes a list of jobs or job ids, got {after!r}")
    ids: set[int] = set()
    for item in after:
        value = item.id if isinstance(item, Job) else item
        if isinstance(item, JobRequest):
            raise ValidationError(
                "after names a JobRequest that is not earlier in the same enqueue_many call"
            )
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
            raise ValidationError(f"after takes jobs or job ids, got {item!r}")
        ids.add(value)
    return sorted(ids)


def schedule(at: datetime | timedelta | None) -> tuple[datetime | None, float]:
    """An absolute time, or a delay from the database's clock."""
    if at is None:
        return None, 0.0
    if isinstance(at, timedelta):
        return None, at.total_seconds()
    if isinstance(at, datetime):
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValidationError("scheduled times must be timezone-aware datetimes")
        return at, 0.0
    raise ValidationError(f"at must be a datetime or a timedelta, got {type(at).__name__}")


def _unknown(scope: str, missing: list[int]) -> ValidationError:
    named = ", ".join(map(str, missing))
    return ValidationError(f"after names no job of scope {scope!r}: {named}")


def insert(conn: Conn, batch: Batch, meta: dict[str, Any]) -> list[Job]:
    """Write the batch (one statement; a second one only when unique keys were
    taken, and one before when jobs name others in `after`, to check that they
    exist) and return one Job per request, in request order."""
    if batch.depends and (unknown := store.jobs_missing(conn, batch.scope, batch.depends)):
        raise _unknown(batch.scope, unknown)
    uniform = batch.uniform
    rows = store.job_insert_many(conn, batch.params(meta, uniform=uniform), uniform=uniform)
    written = batch.written(rows)
    missing = batch.missing(written)
    existing = store.job_get_unique(conn, scope=batch.scope, pairs=missing) if missing else []
    return batch.assemble(written, existing)


async def insert_async(conn: AsyncConn, batch: Batch, meta: dict[str, Any]) -> list[Job]:
    """`insert` for async code."""
    if batch.depends:
        unknown = await store.jobs_missing_async(conn, batch.scope, batch.depends)
        if unknown:
            raise _unknown(batch.scope, unknown)
    uniform = batch.uniform
    params = batch.params(meta, uniform=uniform)
    written = batch.written(await store.job_insert_many_async(conn, params, uniform=uniform))
    missing = batch.missing(written)
    existing = (
        await store.job_get_unique_async(conn, scope=batch.scope, pairs=missing) if missing else []
    )
    return batch.assemble(written, existing)


class Producer:
    """The one enqueue path (docs/enqueue.md): `.delay`, `delay_many`, `enqueue_many`,
    `create_job`, the CLI's `enqueue` and periodic jobs all come here. A caller's
    connection joins its transaction; else `join()` may name one (Django's inside
    `atomic()`, docs/django.md); else the topia's pool. Jobs come back bound to
    `waiter`, for `job.wait()`."""

    def __init__(
        self,
        scope: str,
        registry: Registry,
        max_params_bytes: int,
        pools: Pools,
        waiter: Waiter,
        join: Callable[[], Conn | None] | None = None,
    ) -> None:
        self.scope, self.registry, self.max_params_bytes = scope, registry, max_params_bytes
        self._pools, self._waiter, self.join = pools, waiter, join

    def prepare(self, requests: Sequence[JobRequest], *, label: bool = True) -> Batch:
        """Check every request, writing nothing; ValidationError naming the first bad
        one (with `label`)."""
        return prepare(
            self.scope, self.registry.actions, self.max_params_bytes, requests, label=label
        )

    def enqueue(
        self,
        requests: Sequence[JobRequest],
        connection: Conn | AsyncConn | None = None,
        *,
        label: bool = True,
    ) -> list[Job]:
        staged = waves(requests)
        batch = self.prepare(staged.placeholders if staged else requests, label=label)
        if not batch.slots:
            return []
        if connection is not None and not is_sync_connection(connection):
            raise ValidationError(
                "an AsyncConnection needs the async enqueue calls (enqueue_many_async, "
                "delay_async, ...)"
            )
        if staged is not None:
            return self._enqueue_waves(staged, connection)
        with _span(batch) as meta, self._pools.connection(self._joined(connection)) as conn:
            jobs = insert(conn, batch, meta)
        return [job.bound(self._waiter) for job in jobs]

    def _enqueue_waves(self, staged: Waves, connection: Conn | None) -> list[Job]:
        """A call whose jobs name others of the same call in `after`: one statement per
        wave, in one transaction (docs/flow-control.md)."""
        joined = self._pools.connection(self._joined(connection))
        with joined as conn, joined_transaction(conn):
            for wave in staged.order:
                batch = self.prepare(staged.resolved(wave))
                with _span(batch) as meta:
                    staged.wrote(wave, insert(conn, batch, meta))
        return [job.bound(self._waiter) for job in staged.jobs()]

    async def enqueue_async(
        self,
        requests: Sequence[JobRequest],
        connection: Conn | AsyncConn | None = None,
        *,
        label: bool = True,
    ) -> list[Job]:
        staged = waves(requests)
        batch = self.prepare(staged.placeholders if staged else requests, label=label)
        if not batch.slots:
            return []
        if connection is not None and not is_async_connection(connection):
            raise ValidationError(
                "a sync Connection needs the sync enqueue calls (enqueue_many, delay, ...)"
            )
        if staged is not None:
            return await self._enqueue_waves_async(staged, connection)
        with _span(batch) as meta:
            async with self._pools.async_connection(connection) as conn:
                jobs = await insert_async(conn, batch, meta)
        return [job.bound(self._waiter) for job in jobs]

    async def _enqueue_waves_async(self, staged: Waves, connection: AsyncConn | None) -> list[Job]:
        """`_enqueue_waves` for async code."""
        joined = self._pools.async_connection(connection)
        async with joined as conn, joined_transaction_async(conn):
            for wave in staged.order:
                batch = self.prepare(staged.resolved(wave))
                with _span(batch) as meta:
                    staged.wrote(wave, await insert_async(conn, batch, meta))
        return [job.bound(self._waiter) for job in staged.jobs()]

    def _joined(self, given: Conn | None) -> Conn | None:
        if given is not None or self.join is None:
            return given
        return self.join()


@dataclass
class Waves:
    """A call whose jobs name other jobs of the same call in `after` (a fan-out and its
    fan-in): written in waves, each job after every job it names, and each job of a
    queue no earlier than the one before it in that queue (list order is kept)."""

    requests: Sequence[JobRequest]
    position: dict[int, int]  # id() of each request -> its index
    order: list[list[int]]  # the indexes of the requests of each wave
    placeholders: list[JobRequest]  # the requests as `prepare` checks them up front
    written: dict[int, Job] = field(default_factory=dict)

    def resolved(self, wave: list[int]) -> list[JobRequest]:
        """The wave's requests, each JobRequest in `after` replaced by its job's id."""
        return [
            replace(
                self.requests[i],
                after=[
                    self.written[self.position[id(a)]].id if isinstance(a, JobRequest) else a
                    for a in self.requests[i].after
                ],
            )
            for i in wave
        ]

    def wrote(self, wave: list[int], jobs: list[Job]) -> None:
        self.written.update(zip(wave, jobs, strict=True))

    def jobs(self) -> list[Job]:
        return [self.written[i] for i in range(len(self.requests))]


def waves(requests: Sequence[JobRequest]) -> Waves | None:
    """The waves of a call whose jobs name others of the call in `after`; None for any
    other call (one statement). ValidationError for a JobRequest named that is not
    earlier in the call: cycles cannot be written."""
    if not isinstance(requests, Sequence) or not any(
        isinstance(r, JobRequest)
        and r.after is not NO_JOBS
        and isinstance(r.after, Sequence)
        and any(isinstance(a, JobRequest) for a in r.after)
        for r in requests
    ):  # the identity test first: it is the one a job pays
        return None
    position = {id(r): i for i, r in enumerate(requests)}
    wave: list[int] = []
    last: dict[object, int] = {}
    for i, request in enumerate(requests):
        w = last.get(request.queue, 0)
        for named in request.after:
            if isinstance(named, JobRequest):
                j = position.get(id(named), i)
                if j >= i:
                    raise ValidationError(
                        f"item {i}: after names a JobRequest that is not earlier in this call"
                    )
                w = max(w, wave[j] + 1)
        wave.append(w)
        last[request.queue] = w
    order = [[i for i, w in enumerate(wave) if w == n] for n in range(max(wave) + 1)]
    placeholders = [
        replace(r, after=[1 if isinstance(a, JobRequest) else a for a in r.after]) for r in requests
    ]
    return Waves(requests, position, order, placeholders)


def _span(batch: Batch) -> AbstractContextManager[dict[str, Any]]:
    actions = set(batch.columns["actions"])
    action = actions.pop() if len(actions) == 1 else "*"
    return enqueue_span(batch.scope, batch.queue_label, action, len(batch.slots))
