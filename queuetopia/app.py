"""Queuetopia: configuration, connection pool and action registry; the producer and
operator API. Workers are built by `topia.worker()` (see worker.py)."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from . import enqueue, migrations, operations, results, store
from .actions import (
    Action,
    ActionConfig,
    BackoffFn,
    FailureHook,
    OnExhausted,
    _pick,
    qualified_name,
)
from .database import Database, resolve_dsn
from .errors import (
    InvalidTransition,
    JobNotFound,
    QueuetopiaError,
    ValidationError,
    translate_errors,
)
from .models import Job, JobRequest, JobState, LeaseInfo, MinuteCounts, QueueInfo
from .operations import Selection
from .periodic import Periodic
from .tracing import enqueue_span
from .validation import DEFAULT_MAX_PARAMS_BYTES, DEFAULT_MAX_RESULT_BYTES, check_name

if TYPE_CHECKING:
    from .worker import Worker

P = ParamSpec("P")
R = TypeVar("R")
Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]


def _seconds(value: float | timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ValidationError(f"{what} must be a positive duration, got {value!r}")
    return float(seconds)


class Queuetopia:
    """A database, a scope and a registry of actions."""

    def __init__(
        self,
        dsn: str | None = None,
        scope: str = "default",
        poll_interval: float | timedelta = 60.0,
        concurrency: int = 10,
        lock_ttl: float | timedelta = 30.0,
        job_retention: timedelta | None = timedelta(days=7),
        max_params_bytes: int = DEFAULT_MAX_PARAMS_BYTES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        pool_size: int = 10,
        on_failure: FailureHook | None = None,
        listen_dsn: str | None = None,
        prepared_statements: bool = True,
        enqueue_connection: Callable[[], Conn | None] | None = None,
        commit_timeout: float | timedelta | None = 30.0,
    ) -> None:
        self.scope = check_name("scope", scope)
        self.poll_interval = _seconds(poll_interval, "poll_interval")
        self.lock_ttl = _seconds(lock_ttl, "lock_ttl")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError(f"concurrency must be an int >= 1, got {concurrency!r}")
        self.concurrency = concurrency
        self.job_retention = job_retention
        self.max_params_bytes = max_params_bytes
        # A larger result is dropped with a warning and stored as None (docs/decisions.md).
        self.max_result_bytes = max_result_bytes
        self.pool_size = pool_size
        self.on_failure = on_failure
        self.actions: dict[str, Action[Any, Any]] = {}
        self.periodics: list[Periodic] = []
        self._dsn = dsn
        # Behind PgBouncer in transaction mode: prepared_statements=False, and a
        # listen_dsn that reaches PostgreSQL directly (LISTEN needs a session).
        self._listen_dsn = listen_dsn
        self._prepare_threshold = 5 if prepared_statements else None
        # When set and no connection= is given, sync enqueues run on the connection it
        # returns (None: the topia's own pool). Frameworks join their transaction with
        # it: queuetopia.contrib.django returns Django's inside atomic() (docs/django.md).
        self.enqueue_connection = enqueue_connection
        # How long the pools' and workers' connections wait for any reply, commits
        # included, which PostgreSQL's statement_timeout does not cover: a commit that
        # waits for a synchronous standby that is gone (docs/deploying.md, "Failover").
        self.commit_timeout = (
            None if commit_timeout is None else _seconds(commit_timeout, "commit_timeout")
        )
        self._pool: ConnectionPool | None = None
        # An async pool belongs to the event loop that opened it: one per loop (a web
        # app's loop, and each worker runner's loop for async actions that enqueue).
        self._async_pools: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncConnectionPool
        ] = weakref.WeakKeyDictionary()

    # -- configuration ---------------------------------------------------------

    @property
    def dsn(self) -> str:
        """The DSN in use (resolved on first use: argument, $QUEUETOPIA_DSN, embedded)."""
        if not self._dsn:
            self._dsn = resolve_dsn(self._dsn)
        return self._dsn

    @dsn.setter
    def dsn(self, value: str) -> None:
        """Point this topia at another database (before it first connects)."""
        if self._pool is not None:
            raise QueuetopiaError("cannot change the DSN of a topia that is connected")
        self._dsn = value

    @property
    def database(self) -> Database:
        return Database(self.dsn, self._prepare_threshold, self.commit_timeout)

    @property
    def listen_database(self) -> Database:
        """Where workers LISTEN: `listen_dsn` if given (past a pooler), else `dsn`."""
        return Database(self._listen_dsn or self.dsn, self._prepare_threshold)

    @overload
    def action(self, name: Callable[P, R], /) -> Action[P, R]: ...

    @overload
    def action(
        self,
        name: str | None = None,
        /,
        *,
        timeout: float | timedelta = 60.0,
        max_attempts: int = 20,
        max_backoff: float | timedelta = 86_400.0,
        backoff: BackoffFn | None = None,
        on_exhausted: OnExhausted = "skip",
        on_failure: FailureHook | None = None,
        sensitive: tuple[str, ...] = (),
        max_blocked: float | timedelta | None = None,
    ) -> Callable[[Callable[P, R]], Action[P, R]]: ...

    def action(
        self,
        name: str | Callable[P, R] | None = None,
        /,
        *,
        timeout: float | timedelta = 60.0,
        max_attempts: int = 20,
        max_backoff: float | timedelta = 86_400.0,
        backoff: BackoffFn | None = None,
        on_exhausted: OnExhausted = "skip",
        on_failure: FailureHook | None = None,
        sensitive: tuple[str, ...] = (),
        max_blocked: float | timedelta | None = None,
    ) -> Action[P, R] | Callable[[Callable[P, R]], Action[P, R]]:
        """Register a function as the action `name`; bare (`@topia.action`) or with
        no name, under its module-qualified name (`module.function`), as Celery's
        `@app.task` does (docs/actions.md).

        `on_failure(job, error)` is called after each failed attempt is recorded;
        `sensitive` names params (dotted paths for nested keys, "card.number") that are
        never shown nor searchable (docs/security.md); `max_blocked` parks a head that
        keeps its queue blocked longer than that (docs/blocking.md)."""
        if callable(name):
            return self.action()(name)
        config = ActionConfig(
            timeout=_pick(timeout, None),
            max_attempts=max_attempts,
            max_backoff=_pick(max_backoff, None),
            backoff=backoff,
            on_exhausted=on_exhausted,
            max_blocked=_pick(max_blocked, None),
        )

        def register(fn: Callable[P, R]) -> Action[P, R]:
            action_name = name if isinstance(name, str) else qualified_name(fn)
            action = Action(self, action_name, fn, config, on_failure, sensitive)
            if action_name in self.actions:
                raise ValidationError(f"action {action_name!r} is already registered")
            self.actions[action_name] = action
            return action

        return register

    def periodic(
        self,
        cron: str,
        *,
        queue: str,
        name: str | None = None,
        params: dict[str, Any] | None = None,
        **action_options: Any,
    ) -> Callable[[Callable[P, R]], Action[P, R]]:
        """Register an action that workers enqueue into `queue` at every tick of the
        cron schedule `cron` (UTC), exactly once per tick across all workers."""

        def register(fn: Callable[P, R]) -> Action[P, R]:
            action_name = name or fn.__name__
            periodic = Periodic(
                action_name, cron, check_name("queue", queue), action_name, params or {}
            )
            action = self.action(action_name, **action_options)(fn)
            action.serialise(periodic.params)  # bad params fail here, not at the first tick
            self.periodics.append(periodic)
            return action

        return register

    # -- connections -------------------------------------------------------------

    @contextmanager
    def connection(self, conn: Conn | None = None) -> Iterator[Conn]:
        """`conn` as is (the caller's transaction), else a pooled connection whose
        transaction commits when the block ends."""
        if conn is not None:
            yield conn
            return
        if self._pool is None:
            self._pool = self.database.open_pool(max_size=self.pool_size, name="queuetopia")
        with translate_errors(), self._pool.connection() as pooled:
            yield pooled

    @asynccontextmanager
    async def async_connection(self, conn: AsyncConn | None = None) -> AsyncIterator[AsyncConn]:
        """Like `connection`, for async code (a pool bound to the running event loop)."""
        if conn is not None:
            yield conn
            return
        loop = asyncio.get_running_loop()
        pool = self._async_pools.get(loop)
        if pool is None:
            pool = await self.database.open_async_pool(max_size=self.pool_size)
            self._async_pools[loop] = pool
        with translate_errors():
            async with pool.connection() as pooled:
                yield pooled

    def close(self) -> None:
        """Release the connections (use `aclose` for the async pool)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def aclose(self) -> None:
        """Release the connections, with the async pool of the running event loop."""
        await self.close_async_pool()
        self.close()

    async def close_async_pool(self) -> None:
        """Close the async pool of the running event loop, if it has one."""
        pool = self._async_pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> Queuetopia:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Queuetopia:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrate(self) -> list[int]:
        """Create or upgrade the schema; idempotent and safe to race."""
        with self.connection() as conn:
            return migrations.migrate(conn)

    # -- producing ---------------------------------------------------------------

    def enqueue_many(
        self, items: Sequence[JobRequest], *, connection: Conn | None = None
    ) -> list[Job]:
        """Enqueue jobs for any number of queues and actions in one round trip and one
        transaction (the caller's, with `connection`): validated like `.delay`,
        nothing written if any item is bad, order kept within each queue. Returns
        one Job per item, in order (docs/enqueue.md)."""
        return self.enqueue_requests(items, connection, label=True)

    async def enqueue_many_async(
        self, items: Sequence[JobRequest], *, connection: AsyncConn | None = None
    ) -> list[Job]:
        """`enqueue_many` for async code; `connection` is a psycopg AsyncConnection."""
        return await self.enqueue_requests_async(items, connection, label=True)

    def validate(self, items: Sequence[JobRequest]) -> None:
        """Check `items` as `enqueue_many` would, writing nothing: ValidationError
        naming the first bad item."""
        enqueue.prepare(self.scope, self.actions, self.max_params_bytes, items, label=True)

    def enqueue_requests(
        self, items: Sequence[JobRequest], connection: Conn | None, *, label: bool
    ) -> list[Job]:
        """`enqueue_many`; with `label`, errors name the item (delay_many's do not)."""
        batch = enqueue.prepare(self.scope, self.actions, self.max_params_bytes, items, label=label)
        if not batch.slots:
            return []
        if isinstance(connection, psycopg.AsyncConnection):
            raise ValidationError("an AsyncConnection needs enqueue_many_async")
        with self._span(batch) as meta, self.connection(self._enqueue_target(connection)) as conn:
            jobs = enqueue.insert(conn, batch, meta)
        return [job.bound(self) for job in jobs]

    async def enqueue_requests_async(
        self, items: Sequence[JobRequest], connection: AsyncConn | None, *, label: bool
    ) -> list[Job]:
        batch = enqueue.prepare(self.scope, self.actions, self.max_params_bytes, items, label=label)
        if not batch.slots:
            return []
        if isinstance(connection, psycopg.Connection):
            raise ValidationError("a sync Connection needs enqueue_many")
        with self._span(batch) as meta:
            async with self.async_connection(connection) as conn:
                jobs = await enqueue.insert_async(conn, batch, meta)
        return [job.bound(self) for job in jobs]

    def _span(self, batch: enqueue.Batch) -> AbstractContextManager[dict[str, Any]]:
        actions = set(batch.columns["actions"])
        action = actions.pop() if len(actions) == 1 else "*"
        return enqueue_span(self.scope, batch.wake or "*", action, len(batch.slots))

    def create_job(
        self,
        queue: str,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        scheduled_at: datetime | timedelta | None = None,
        timeout: float | timedelta | None = None,
        max_backoff: float | timedelta | None = None,
        max_attempts: int | None = None,
        unique_key: str | None = None,
        connection: Conn | None = None,
    ) -> Job:
        """Enqueue a job by action name; the action need not be registered here."""
        request = JobRequest(
            queue,
            action,
            {} if params is None else params,
            scheduled_at=scheduled_at,
            timeout=timeout,
            max_attempts=max_attempts,
            max_backoff=max_backoff,
            unique_key=unique_key,
        )
        return self.enqueue_requests([request], connection, label=False)[0]

    async def create_job_async(
        self,
        queue: str,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        scheduled_at: datetime | timedelta | None = None,
        timeout: float | timedelta | None = None,
        max_backoff: float | timedelta | None = None,
        max_attempts: int | None = None,
        unique_key: str | None = None,
        connection: AsyncConn | None = None,
    ) -> Job:
        """`create_job` for async code; `connection` is a psycopg AsyncConnection."""
        request = JobRequest(
            queue,
            action,
            {} if params is None else params,
            scheduled_at=scheduled_at,
            timeout=timeout,
            max_attempts=max_attempts,
            max_backoff=max_backoff,
            unique_key=unique_key,
        )
        return (await self.enqueue_requests_async([request], connection, label=False))[0]

    # -- results -----------------------------------------------------------------

    def _enqueue_target(self, given: Conn | None) -> Conn | None:
        """The connection a sync enqueue runs on: the caller's, else the one
        `enqueue_connection` returns, else None (the pool)."""
        if given is not None or self.enqueue_connection is None:
            return given
        return self.enqueue_connection()

    def wait(self, job_id: int, timeout: float = 30.0) -> Any:
        """The result of job `job_id` once it is done. Raises JobFailed or
        JobCancelled when it ended otherwise, TimeoutError when it has not ended
        within `timeout` seconds. Polls the job with backoff from 5 ms to 1 s: a
        job nobody waits for costs nothing (docs/results.md)."""
        poll = results.Poll(job_id, timeout)
        while True:
            with self.connection() as conn:
                job = store.job_get(conn, scope=self.scope, job_id=job_id)
            if results.settled(job, job_id, self.scope):
                return results.outcome(job)
            time.sleep(poll.next_pause(job))

    async def wait_async(self, job_id: int, timeout: float = 30.0) -> Any:
        """`wait` for async code."""
        poll = results.Poll(job_id, timeout)
        while True:
            async with self.async_connection() as conn:
                job = await store.job_get_async(conn, scope=self.scope, job_id=job_id)
            if results.settled(job, job_id, self.scope):
                return results.outcome(job)
            await asyncio.sleep(poll.next_pause(job))

    def notify(self, queue: str = "") -> None:
        """Wake every worker of this scope now."""
        with self.connection() as conn:
            store.scope_notify(conn, self.scope, queue)

    # -- operating ---------------------------------------------------------------

    def shown_params(self, job: Job) -> dict[str, Any]:
        """The job's params for display, with the action's sensitive params hidden."""
        action = self.actions.get(job.action)
        return action.shown_params(job.params) if action else dict(job.params)

    def get_job(self, job_id: int) -> Job | None:
        with self.connection() as conn:
            job = store.job_get(conn, scope=self.scope, job_id=job_id)
        return None if job is None else job.bound(self)

    def list_jobs(
        self,
        queue: str | None = None,
        action: str | None = None,
        state: JobState | str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        if state is not None:
            try:
                state = JobState(state)
            except ValueError:
                raise ValidationError(f"unknown job state {state!r}") from None
        with self.connection() as conn:
            found = store.job_list(
                conn,
                scope=self.scope,
                queue=queue,
                action=action,
                state=None if state is None else str(state),
                search=search,
                limit=limit,
                offset=offset,
                # Only this process's registry says what is sensitive (docs/security.md).
                hidden={n: sorted(a.sensitive) for n, a in self.actions.items() if a.sensitive},
            )
        return [job.bound(self) for job in found]

    def list_queues(self) -> list[QueueInfo]:
        with self.connection() as conn:
            return store.queue_list(conn, scope=self.scope)

    def retry_job(self, job_id: int, *, by: str | None = None, reason: str | None = None) -> Job:
        """Make a pending, failed or cancelled job due now, at its place in line.
        `by` (default: the OS user) and `reason` are recorded on the job."""
        return self._one(job_id, "retry", self.retry_jobs([job_id], by=by, reason=reason))

    def cancel_job(self, job_id: int, reason: str = "by operator", *, by: str | None = None) -> Job:
        """Take a pending or failed job out of its queue; the queue moves on."""
        return self._one(job_id, "cancel", self.cancel_jobs([job_id], by=by, reason=reason))

    def select_jobs(self, selection: Selection, *, verb: str = "retry") -> list[Job]:
        """The jobs `selection` names that `verb` ('retry' or 'cancel') applies to:
        what a dry run of that change shows (docs/operations.md)."""
        allowed = operations.CANCELLABLE if verb == "cancel" else operations.RETRYABLE
        params = selection.params(allowed, verb)
        with self.connection() as conn:
            found = store.job_select(conn, scope=self.scope, selection=params)
        return [job.bound(self) for job in found]

    def retry_jobs(
        self,
        jobs: Selection | Sequence[int],
        *,
        dry_run: bool = False,
        by: str | None = None,
        reason: str | None = None,
    ) -> list[Job]:
        """Retry the jobs named (ids, or a Selection) that allow it; return them as
        changed, or, with `dry_run`, as they are (nothing written)."""
        return self._change(jobs, "retry", dry_run, by, reason)

    def cancel_jobs(
        self,
        jobs: Selection | Sequence[int],
        *,
        dry_run: bool = False,
        by: str | None = None,
        reason: str | None = None,
    ) -> list[Job]:
        """Cancel the jobs named (ids, or a Selection) that allow it; return them as
        changed, or, with `dry_run`, as they are (nothing written)."""
        return self._change(jobs, "cancel", dry_run, by, reason)

    def _change(
        self,
        jobs: Selection | Sequence[int],
        verb: str,
        dry_run: bool,
        by: str | None,
        reason: str | None,
    ) -> list[Job]:
        signature = operations.signature(by, reason)
        if isinstance(jobs, Selection):
            found = self.select_jobs(jobs, verb=verb)
            if dry_run:
                return found
            ids = [job.id for job in found]
        else:
            ids = [_job_id(i) for i in jobs]
            if dry_run:
                return [job for job in map(self.get_job, ids) if job is not None]
        if not ids:
            return []
        change = store.job_cancel if verb == "cancel" else store.job_retry
        with self.connection() as conn, conn.transaction():
            changed = change(conn, scope=self.scope, ids=ids, signature=signature)
            queues = sorted({job.queue for job in changed})
            if queues:
                store.queue_touch(conn, scope=self.scope, queues=queues)
                store.scope_notify(conn, self.scope, queues[0] if len(queues) == 1 else "")
        return [job.bound(self) for job in changed]

    def _one(self, job_id: int, verb: str, changed: list[Job]) -> Job:
        if changed:
            return changed[0]
        job = self.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id} in scope {self.scope!r}")
        if job.unique_key is not None and job.state != JobState.PENDING and verb == "retry":
            raise InvalidTransition(
                f"cannot retry job {job_id}: another job in queue {job.queue!r} holds "
                f"its unique key {job.unique_key!r}"
            )
        raise InvalidTransition(f"cannot {verb} job {job_id}: it is {job.state.value}")

    def pause_queue(self, queue: str, *, by: str | None = None, reason: str | None = None) -> None:
        """A paused queue starts no new job; a running one finishes. `by` (default:
        the OS user) and `reason` are recorded on the queue."""
        self._set_paused([check_name("queue", queue)], True, by, reason)

    def resume_queue(self, queue: str, *, by: str | None = None, reason: str | None = None) -> None:
        """Let a paused queue start jobs again."""
        self._set_paused([check_name("queue", queue)], False, by, reason)

    def pause_queues(
        self,
        pattern: str | Sequence[str],
        *,
        dry_run: bool = False,
        by: str | None = None,
        reason: str | None = None,
    ) -> list[str]:
        """Pause every queue whose name matches the glob `pattern` (or the queues
        named, a list); return the names of those that changed (with `dry_run`, that
        would change)."""
        return self._set_paused_matching(pattern, True, dry_run, by, reason)

    def resume_queues(
        self,
        pattern: str | Sequence[str],
        *,
        dry_run: bool = False,
        by: str | None = None,
        reason: str | None = None,
    ) -> list[str]:
        """Resume every paused queue matching the glob `pattern`; as `pause_queues`."""
        return self._set_paused_matching(pattern, False, dry_run, by, reason)

    def _set_paused_matching(
        self,
        pattern: str | Sequence[str],
        paused: bool,
        dry_run: bool,
        by: str | None,
        reason: str | None,
    ) -> list[str]:
        if isinstance(pattern, str):
            with self.connection() as conn:
                like = operations.like(pattern)
                found = store.queue_select(conn, scope=self.scope, pattern=like)
        else:
            wanted = {check_name("queue", name) for name in pattern}
            found = [(q.queue, q.paused) for q in self.list_queues() if q.queue in wanted]
        names = [name for name, is_paused in found if is_paused != paused]
        if dry_run or not names:
            operations.signature(by, reason)  # bad input fails the dry run too
            return names
        return self._set_paused(names, paused, by, reason)

    def _set_paused(
        self, queues: list[str], paused: bool, by: str | None, reason: str | None
    ) -> list[str]:
        signature = operations.signature(by, reason)
        changed: list[str] = []
        with self.connection() as conn, conn.transaction():
            for queue in sorted(queues):  # name order, as producers lock queue rows
                if store.queue_set_paused(
                    conn, scope=self.scope, queue=queue, paused=paused, signature=signature
                ):
                    changed.append(queue)
            if changed:
                store.scope_notify(conn, self.scope, changed[0] if len(changed) == 1 else "")
        return changed

    def prune(self, older_than: timedelta | float = timedelta(days=7), batch: int = 1000) -> int:
        """Delete done and cancelled jobs older than `older_than`; return how many."""
        seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
        total = 0
        while True:
            with self.connection() as conn:
                deleted = store.job_prune_batch(
                    conn, scope=self.scope, older_than=seconds, batch=batch
                )
            total += deleted
            if deleted < batch:
                return total

    # -- working -------------------------------------------------------------------

    def worker(
        self,
        concurrency: int | None = None,
        queues: list[str] | None = None,
        name: str | None = None,
        shutdown_timeout: float = 30.0,
    ) -> Worker:
        from .worker import Worker

        return Worker(
            self,
            concurrency=concurrency or self.concurrency,
            queues=queues,
            name=name,
            shutdown_timeout=shutdown_timeout,
        )

    # -- reads for the dashboard (docs/dashboard.md) --------------------------------

    def list_leases(self) -> list[LeaseInfo]:
        """The live leases of this scope: which worker node holds which queue."""
        with self.connection() as conn:
            return store.lease_list(conn, scope=self.scope)

    def queue_line(self, queue: str, limit: int = 50, offset: int = 0) -> list[Job]:
        """The jobs still in `queue`'s line, in the order they run, head first."""
        check_name("queue", queue)
        with self.connection() as conn:
            return store.queue_line(conn, scope=self.scope, queue=queue, limit=limit, offset=offset)

    def job_counts_per_minute(
        self, minutes: int = 60, queue: str | None = None
    ) -> list[MinuteCounts]:
        """Jobs done and failed in each of the last `minutes` minutes, oldest first
        (computed from the jobs; what "failed" counts is in docs/dashboard.md)."""
        if not isinstance(minutes, int) or not 1 <= minutes <= 24 * 60:
            raise ValidationError(f"minutes must be an int from 1 to 1440, got {minutes!r}")
        with self.connection() as conn:
            return store.job_counts_per_minute(conn, scope=self.scope, queue=queue, minutes=minutes)


def _job_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"job ids are ints, got {value!r}")
    return value
