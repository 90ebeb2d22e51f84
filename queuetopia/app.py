"""Queuetopia: configuration, connection pool and action registry; the producer and
operator API. Workers are built by `topia.worker()` (see worker.py)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from . import migrations, store
from .actions import (
    Action,
    ActionConfig,
    BackoffFn,
    FailureHook,
    JobOptions,
    OnExhausted,
    _pick,
)
from .database import Database, resolve_dsn
from .errors import (
    InvalidTransition,
    JobNotFound,
    QueuetopiaError,
    ValidationError,
    translate_errors,
)
from .models import Job, JobState, LeaseInfo, MinuteCounts, QueueInfo
from .periodic import Periodic
from .tracing import enqueue_span
from .validation import DEFAULT_MAX_PARAMS_BYTES, check_name, check_text, params_json

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
        pool_size: int = 10,
        on_failure: FailureHook | None = None,
        listen_dsn: str | None = None,
        prepared_statements: bool = True,
        enqueue_connection: Callable[[], Conn | None] | None = None,
    ) -> None:
        self.scope = check_name("scope", scope)
        self.poll_interval = _seconds(poll_interval, "poll_interval")
        self.lock_ttl = _seconds(lock_ttl, "lock_ttl")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError(f"concurrency must be an int >= 1, got {concurrency!r}")
        self.concurrency = concurrency
        self.job_retention = job_retention
        self.max_params_bytes = max_params_bytes
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
        return Database(self.dsn, self._prepare_threshold)

    @property
    def listen_database(self) -> Database:
        """Where workers LISTEN: `listen_dsn` if given (past a pooler), else `dsn`."""
        return Database(self._listen_dsn or self.dsn, self._prepare_threshold)

    def action(
        self,
        name: str,
        *,
        timeout: float | timedelta = 60.0,
        max_attempts: int = 20,
        max_backoff: float | timedelta = 86_400.0,
        backoff: BackoffFn | None = None,
        on_exhausted: OnExhausted = "skip",
        on_failure: FailureHook | None = None,
        sensitive: tuple[str, ...] = (),
    ) -> Callable[[Callable[P, R]], Action[P, R]]:
        """Register a function as the action `name`.

        `on_failure(job, error)` is called after each failed attempt is recorded;
        `sensitive` names params (dotted paths for nested keys, "card.number") that are
        never shown nor searchable (docs/security.md)."""
        config = ActionConfig(
            timeout=_pick(timeout, None),
            max_attempts=max_attempts,
            max_backoff=_pick(max_backoff, None),
            backoff=backoff,
            on_exhausted=on_exhausted,
        )

        def register(fn: Callable[P, R]) -> Action[P, R]:
            action = Action(self, name, fn, config, on_failure, sensitive)
            if name in self.actions:
                raise ValidationError(f"action {name!r} is already registered")
            self.actions[name] = action
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
        connection: Conn | None = None,
    ) -> Job:
        """Enqueue a job by action name; the action need not be registered here."""
        text, options = self._untyped_job(
            action, params, timeout, max_backoff, max_attempts, connection
        )
        return self.enqueue_serialised(queue, action, [text], at=scheduled_at, options=options)[0]

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
        connection: AsyncConn | None = None,
    ) -> Job:
        """`create_job` for async code; `connection` is a psycopg AsyncConnection."""
        text, options = self._untyped_job(
            action, params, timeout, max_backoff, max_attempts, connection
        )
        jobs = await self.enqueue_serialised_async(
            queue, action, [text], at=scheduled_at, options=options
        )
        return jobs[0]

    def _untyped_job(
        self,
        action: str,
        params: dict[str, Any] | None,
        timeout: float | timedelta | None,
        max_backoff: float | timedelta | None,
        max_attempts: int | None,
        connection: Conn | AsyncConn | None,
    ) -> tuple[str, JobOptions]:
        check_name("action", action)
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise ValidationError("params must be a dict")
        registered = self.actions.get(action)
        text = (
            registered.serialise(params)
            if registered
            else params_json(params, self.max_params_bytes)
        )
        options = JobOptions(
            _pick(timeout, None), max_attempts, _pick(max_backoff, None), connection
        )
        return text, options

    def enqueue_serialised(
        self,
        queue: str,
        action: str,
        params_texts: list[str],
        *,
        at: datetime | timedelta | None,
        options: JobOptions,
    ) -> list[Job]:
        """Write validated jobs in one round trip; the shared end of every enqueue."""
        request = self._insert_request(queue, action, params_texts, at, options)
        if not params_texts:
            return []
        if isinstance(options.connection, psycopg.AsyncConnection):
            raise ValidationError("an AsyncConnection needs the *_async enqueue calls")
        with (
            enqueue_span(self.scope, queue, action, len(params_texts)) as meta,
            self.connection(self._enqueue_target(options.connection)) as conn,
        ):
            return store.job_insert(conn, {**request, "meta": Jsonb(meta)})

    def _enqueue_target(self, given: Conn | None) -> Conn | None:
        """The connection a sync enqueue runs on: the caller's, else the one
        `enqueue_connection` returns, else None (the pool)."""
        if given is not None or self.enqueue_connection is None:
            return given
        return self.enqueue_connection()

    async def enqueue_serialised_async(
        self,
        queue: str,
        action: str,
        params_texts: list[str],
        *,
        at: datetime | timedelta | None,
        options: JobOptions,
    ) -> list[Job]:
        """`enqueue_serialised` for async code: the same request, async I/O."""
        request = self._insert_request(queue, action, params_texts, at, options)
        if not params_texts:
            return []
        if isinstance(options.connection, psycopg.Connection):
            raise ValidationError("a sync Connection needs the sync enqueue calls")
        with enqueue_span(self.scope, queue, action, len(params_texts)) as meta:
            async with self.async_connection(options.connection) as conn:
                return await store.job_insert_async(conn, {**request, "meta": Jsonb(meta)})

    def _insert_request(
        self,
        queue: str,
        action: str,
        params_texts: list[str],
        at: datetime | timedelta | None,
        options: JobOptions,
    ) -> dict[str, Any]:
        check_name("queue", queue)
        registered = self.actions.get(action)
        config = (registered.config if registered else ActionConfig()).resolve(options)
        absolute, delay = _schedule(at)
        return store.job_insert_params(
            scope=self.scope,
            queue=queue,
            action=action,
            params_list=params_texts,
            at=absolute,
            delay=delay,
            timeout=config.timeout,
            max_attempts=config.max_attempts,
            max_backoff=config.max_backoff,
            on_exhausted=config.on_exhausted,
        )

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
            return store.job_get(conn, scope=self.scope, job_id=job_id)

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
            return store.job_list(
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

    def list_queues(self) -> list[QueueInfo]:
        with self.connection() as conn:
            return store.queue_list(conn, scope=self.scope)

    def retry_job(self, job_id: int) -> Job:
        """Make a pending, failed or cancelled job due now, at its place in line."""
        with self.connection() as conn, conn.transaction():
            job = store.job_retry(conn, scope=self.scope, job_id=job_id)
            if job is None:
                self._refuse(conn, job_id, "retry")
            return self._touched(conn, job)

    def cancel_job(self, job_id: int, reason: str = "by operator") -> Job:
        """Take a pending or failed job out of its queue; the queue moves on."""
        check_text("reason", reason)
        with self.connection() as conn, conn.transaction():
            job = store.job_cancel(conn, scope=self.scope, job_id=job_id, reason=reason)
            if job is None:
                self._refuse(conn, job_id, "cancel")
            return self._touched(conn, job)

    def _refuse(self, conn: Conn, job_id: int, verb: str) -> NoReturn:
        job = store.job_get(conn, scope=self.scope, job_id=job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id} in scope {self.scope!r}")
        raise InvalidTransition(f"cannot {verb} job {job_id}: it is {job.state.value}")

    def _touched(self, conn: Conn, job: Job | None) -> Job:
        assert job is not None
        store.queue_touch(conn, scope=self.scope, queue=job.queue)
        store.scope_notify(conn, self.scope, job.queue)
        return job

    def pause_queue(self, queue: str) -> None:
        """A paused queue starts no new job; a running one finishes."""
        self._set_paused(queue, True)

    def resume_queue(self, queue: str) -> None:
        self._set_paused(queue, False)

    def _set_paused(self, queue: str, paused: bool) -> None:
        check_name("queue", queue)
        with self.connection() as conn, conn.transaction():
            store.queue_set_paused(conn, scope=self.scope, queue=queue, paused=paused)
            store.scope_notify(conn, self.scope, queue)

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


def _schedule(at: datetime | timedelta | None) -> tuple[datetime | None, float]:
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
