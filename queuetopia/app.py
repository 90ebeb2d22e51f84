"""Queuetopia, the public facade: it makes the settings, the action registry, the
connections and the enqueue path, and hands each part to what needs it (docs/design.md).
Nothing below it imports it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar, overload

from . import migrations, operations
from .actions import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_TIMEOUT,
    Action,
    ActionConfig,
    BackoffFn,
    FailureHook,
    OnExhausted,
    qualified_name,
)
from .db import store
from .db.connections import Database, Pools, resolve_dsn
from .db.rows import AsyncConn, Conn, transaction
from .durations import positive_seconds, seconds
from .engine import Engine
from .enqueue import Producer
from .errors import InvalidTransition, JobNotFound, QueuetopiaError, ValidationError
from .limits import limit_params
from .models import Job, JobRequest, JobState, LeaseInfo, MinuteCounts, QueueInfo, RateLimit
from .operations import Selection
from .periodic import Periodic
from .registry import Registry
from .results import Results
from .settings import Settings
from .validation import DEFAULT_MAX_PARAMS_BYTES, DEFAULT_MAX_RESULT_BYTES, check_name
from .worker import Worker

P = ParamSpec("P")
R = TypeVar("R")


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
        self.settings = Settings.of(
            scope=scope,
            poll_interval=poll_interval,
            concurrency=concurrency,
            lock_ttl=lock_ttl,
            job_retention=job_retention,
            max_params_bytes=max_params_bytes,
            max_result_bytes=max_result_bytes,
            pool_size=pool_size,
            commit_timeout=commit_timeout,
            prepared_statements=prepared_statements,
        )
        self.registry = Registry(on_failure)
        self._dsn = dsn
        # Behind PgBouncer in transaction mode: prepared_statements=False, and a
        # listen_dsn that reaches PostgreSQL directly (LISTEN needs a session).
        self._listen_dsn = listen_dsn
        self._pools = Pools(lambda: self.database, pool_size, migrations.schema_problem)
        self._results = Results(self.scope, self._pools)
        # With enqueue_connection set and no connection= given, sync enqueues run on
        # the connection it returns (None: the pool). Frameworks join their
        # transaction with it: queuetopia.contrib.django (docs/django.md).
        self.producer = Producer(
            self.scope, self.registry, max_params_bytes, self._pools, self._results
        )
        self.producer.join = enqueue_connection

    # -- configuration ---------------------------------------------------------

    @property
    def scope(self) -> str:
        return self.settings.scope

    @scope.setter
    def scope(self, value: str) -> None:
        """Move this topia to another scope: what a test suite does to give each test
        a scope of its own (docs/testing.md). Workers made before keep theirs."""
        self.settings = replace(self.settings, scope=value)
        self.producer.scope = self._results.scope = self.settings.scope

    @property
    def poll_interval(self) -> float:
        return self.settings.poll_interval

    @poll_interval.setter
    def poll_interval(self, value: float | timedelta) -> None:
        """For workers made after this (the CLI's --poll-interval)."""
        self.settings = replace(
            self.settings, poll_interval=positive_seconds(value, "poll_interval")
        )

    @property
    def lock_ttl(self) -> float:
        return self.settings.lock_ttl

    @property
    def concurrency(self) -> int:
        return self.settings.concurrency

    @property
    def job_retention(self) -> timedelta | None:
        return self.settings.job_retention

    @property
    def max_params_bytes(self) -> int:
        return self.settings.max_params_bytes

    @property
    def max_result_bytes(self) -> int:
        return self.settings.max_result_bytes

    @property
    def pool_size(self) -> int:
        return self.settings.pool_size

    @property
    def commit_timeout(self) -> float | None:
        return self.settings.commit_timeout

    @property
    def on_failure(self) -> FailureHook | None:
        return self.registry.on_failure

    @property
    def actions(self) -> dict[str, Action[Any, Any]]:
        return self.registry.actions

    @property
    def periodics(self) -> list[Periodic]:
        return self.registry.periodics

    @property
    def enqueue_connection(self) -> Callable[[], Conn | None] | None:
        return self.producer.join

    @enqueue_connection.setter
    def enqueue_connection(self, value: Callable[[], Conn | None] | None) -> None:
        self.producer.join = value

    @property
    def dsn_given(self) -> bool:
        """Was a DSN given (to the constructor, or set), rather than found?"""
        return bool(self._dsn)

    @property
    def dsn(self) -> str:
        """The DSN in use (resolved on first use: argument, $QUEUETOPIA_DSN, embedded)."""
        if not self._dsn:
            self._dsn = resolve_dsn(self._dsn)
        return self._dsn

    @dsn.setter
    def dsn(self, value: str) -> None:
        """Point this topia at another database (before it first connects)."""
        if self._pools.opened:
            raise QueuetopiaError("cannot change the DSN of a topia that is connected")
        self._dsn = value

    @property
    def database(self) -> Database:
        s = self.settings
        return Database(self.dsn, s.prepare_threshold, s.commit_timeout)

    @property
    def listen_database(self) -> Database:
        """Where workers LISTEN: `listen_dsn` if given (past a pooler), else `dsn`."""
        return Database(self._listen_dsn or self.dsn, self.settings.prepare_threshold)

    @property
    def engine(self) -> Engine:
        """What a worker needs of this topia, explicitly (docs/design.md)."""
        return Engine(
            self.settings,
            self.registry,
            self.database,
            self.listen_database,
            self.producer,
            self._pools.close_async,
        )

    @overload
    def action(self, name: Callable[P, R], /) -> Action[P, R]: ...

    @overload
    def action(
        self,
        name: str | None = None,
        /,
        *,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_backoff: float | timedelta = DEFAULT_MAX_BACKOFF,
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
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_backoff: float | timedelta = DEFAULT_MAX_BACKOFF,
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
        config = ActionConfig.of(
            timeout=timeout,
            max_attempts=max_attempts,
            max_backoff=max_backoff,
            backoff=backoff,
            on_exhausted=on_exhausted,
            max_blocked=max_blocked,
        )

        def register(fn: Callable[P, R]) -> Action[P, R]:
            action_name = name if isinstance(name, str) else qualified_name(fn)
            action = Action(
                self.producer,
                action_name,
                fn,
                config,
                max_params_bytes=self.settings.max_params_bytes,
                on_failure=on_failure,
                sensitive=sensitive,
            )
            self.registry.add(action)
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
            periodic = Periodic(cron, check_name("queue", queue), action_name, params or {})
            action = self.action(action_name, **action_options)(fn)
            action.serialise(periodic.params)  # bad params fail here, not at the first tick
            self.registry.periodics.append(periodic)
            return action

        return register

    # -- connections -------------------------------------------------------------

    @contextmanager
    def connection(self, conn: Conn | None = None) -> Iterator[Conn]:
        """`conn` as is (the caller's transaction), else a pooled autocommit
        connection."""
        with self._pools.connection(conn) as given:
            yield given

    @contextmanager
    def transaction(self, conn: Conn | None = None) -> Iterator[Conn]:
        """A pooled connection (or `conn`) in a transaction that commits when the
        block ends: pass it as `connection=` to write several calls together."""
        with self._pools.connection(conn) as given, transaction(given):
            yield given

    @asynccontextmanager
    async def async_connection(self, conn: AsyncConn | None = None) -> AsyncIterator[AsyncConn]:
        """Like `connection`, for async code (a pool bound to the running event loop)."""
        async with self._pools.async_connection(conn) as given:
            yield given

    def close(self) -> None:
        """Release the connections (use `aclose` for the async pool)."""
        self._pools.close()

    async def aclose(self) -> None:
        """Release the connections, with the async pool of the running event loop."""
        await self._pools.close_async()
        self.close()

    async def close_async_pool(self) -> None:
        """Close the async pool of the running event loop, if it has one."""
        await self._pools.close_async()

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
        return self.producer.enqueue(items, connection)

    async def enqueue_many_async(
        self, items: Sequence[JobRequest], *, connection: AsyncConn | None = None
    ) -> list[Job]:
        """`enqueue_many` for async code; `connection` is a psycopg AsyncConnection."""
        return await self.producer.enqueue_async(items, connection)

    def validate(self, items: Sequence[JobRequest]) -> None:
        """Check `items` as `enqueue_many` would, writing nothing: ValidationError
        naming the first bad item."""
        self.producer.prepare(items)

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
        after: Sequence[Job | int] = (),
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
            after=after,
        )
        return self.producer.enqueue([request], connection, label=False)[0]

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
        after: Sequence[Job | int] = (),
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
            after=after,
        )
        return (await self.producer.enqueue_async([request], connection, label=False))[0]

    # -- results -----------------------------------------------------------------

    def wait(self, job_id: int, timeout: float = 30.0) -> Any:
        """The result of job `job_id` once it is done. Raises JobFailed or
        JobCancelled when it ended otherwise, TimeoutError when it has not ended
        within `timeout` seconds. Polls the job with backoff from 5 ms to 1 s: a
        job nobody waits for costs nothing (docs/results.md)."""
        return self._results.wait(job_id, timeout)

    async def wait_async(self, job_id: int, timeout: float = 30.0) -> Any:
        """`wait` for async code."""
        return await self._results.wait_async(job_id, timeout)

    def notify(self, queue: str = "") -> None:
        """Wake every worker of this scope now."""
        with self.connection() as conn:
            store.scope_notify(conn, self.scope, queue)

    # -- operating ---------------------------------------------------------------

    def shown_params(self, job: Job) -> dict[str, Any]:
        """The job's params for display, with the action's sensitive params hidden."""
        return self.registry.shown_params(job.action, job.params)

    def get_job(self, job_id: int) -> Job | None:
        with self.connection() as conn:
            job = store.job_get(conn, scope=self.scope, job_id=job_id)
        return None if job is None else job.bound(self._results)

    def list_jobs(
        self,
        queue: str | None = None,
        action: str | None = None,
        state: JobState | str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        state = None if state is None else operations.state(state)
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
                hidden=self.registry.hidden(),
            )
        return [job.bound(self._results) for job in found]

    def list_queues(self) -> list[QueueInfo]:
        with self.connection() as conn:
            return store.queue_list(conn, scope=self.scope)

    def get_queue(self, queue: str) -> QueueInfo | None:
        """The queue named, as `list_queues` shows it; None if the scope has none."""
        check_name("queue", queue)
        with self.connection() as conn:
            found = store.queue_list(conn, scope=self.scope, queue=queue)
        return found[0] if found else None

    def retry_job(self, job_id: int, *, by: str | None = None, reason: str | None = None) -> Job:
        """Make a pending, failed or cancelled job due now, at its place in line.
        `by` (default: the OS user) and `reason` are recorded on the job."""
        return self._one(job_id, "retry", self.retry_jobs([job_id], by=by, reason=reason))

    def cancel_job(self, job_id: int, reason: str = "by operator", *, by: str | None = None) -> Job:
        """Take a pending or failed job out of its queue; the queue moves on. A running
        job is cancelled while it runs: the job is returned still running, with the
        request in its operator log, and ends cancelled once its worker has stopped
        it, unless it is done first (docs/flow-control.md)."""
        return self._one(job_id, "cancel", self.cancel_jobs([job_id], by=by, reason=reason))

    def select_jobs(self, selection: Selection, *, verb: str = "retry") -> list[Job]:
        """The jobs `selection` names that `verb` ('retry' or 'cancel') applies to:
        what a dry run of that change shows (docs/operations.md)."""
        allowed = operations.CANCELLABLE if verb == "cancel" else operations.RETRYABLE
        params = selection.params(allowed, verb)
        with self.connection() as conn:
            found = store.job_select(conn, scope=self.scope, selection=params)
        return [job.bound(self._results) for job in found]

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
        with self.connection() as conn:
            changed = store.jobs_change(
                conn, scope=self.scope, ids=ids, signature=signature, cancel=verb == "cancel"
            )
        return [job.bound(self._results) for job in changed]

    def _one(self, job_id: int, verb: str, changed: list[Job]) -> Job:
        if changed:
            return changed[0]
        job = self.get_job(job_id)
        if job is None:
            raise JobNotFound.of(job_id, self.scope)
        if job.unique_key is not None and job.state != JobState.PENDING and verb == "retry":
            raise InvalidTransition(
                f"cannot retry job {job_id}: another job in queue {job.queue!r} holds "
                f"its unique key {job.unique_key!r}"
            )
        raise InvalidTransition(f"cannot {verb} job {job_id}: it is {job.state.value}")

    # -- rate limits (docs/flow-control.md) ---------------------------------------------

    def set_limit(
        self,
        name: str,
        *,
        queues: str,
        rate: str | tuple[int, float | timedelta],
        burst: int = 1,
        shared: bool = False,
        by: str | None = None,
    ) -> RateLimit:
        """Create or replace the rate limit `name`: job starts in the queues matching
        `queues` (a name or glob) at most `rate` ('10/s', '100/min', or (count,
        period)), bursts of `burst`; each queue on its own budget, or `shared`."""
        params = limit_params(name, queues, rate, burst, shared)
        params["by"] = operations.signature(by, None).by
        with self.connection() as conn:
            return store.limit_set(conn, scope=self.scope, limit=params)

    def list_limits(self) -> list[RateLimit]:
        with self.connection() as conn:
            return store.limit_list(conn, scope=self.scope)

    def remove_limit(self, name: str) -> RateLimit:
        """Remove the rate limit `name` (the queues it covered start at once)."""
        check_name("limit", name)
        with self.connection() as conn:
            removed = store.limit_remove(conn, scope=self.scope, name=name)
        if removed is None:
            raise ValidationError(f"no rate limit {name!r} in scope {self.scope!r}")
        return removed

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
        with self.connection() as conn:
            return store.queues_set_paused(
                conn, scope=self.scope, queues=queues, paused=paused, signature=signature
            )

    def prune(self, older_than: timedelta | float = timedelta(days=7), batch: int = 1000) -> int:
        """Delete done and cancelled jobs older than `older_than`; return how many.
        Rate limits' budgets that are full again go too (docs/flow-control.md)."""
        total = 0
        with self.connection() as conn:
            while store.bucket_prune(conn, scope=self.scope, batch=batch) == batch:
                pass
        while True:
            with self.connection() as conn:
                deleted = store.job_prune_batch(
                    conn, scope=self.scope, older_than=seconds(older_than), batch=batch
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
        prefetch: int | None = None,
    ) -> Worker:
        return Worker(
            self.engine,
            concurrency=concurrency or self.concurrency,
            queues=queues,
            name=name,
            shutdown_timeout=shutdown_timeout,
            prefetch=prefetch,
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
