"""The worker: its lifecycle and its loop. The loop waits (notification, poll, next due
time, a runner's release), takes leases on due queues for free slots, and hands each
to a runner thread (runner.py). A heartbeat and a listener run beside it.
No transaction is ever open while an action runs."""

from __future__ import annotations

import logging
import os
import queue as queue_module
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from . import failstop, migrations, store
from .backoff import retry_bookkeeping
from .database import ThreadConnections
from .errors import (
    ConnectionRejected,
    DatabaseConflict,
    DatabaseUnavailable,
    ValidationError,
    translate_errors,
)
from .events import LogObserver, Observer, Observers
from .executor import close_thread_loop
from .heartbeat import Heartbeat
from .models import Job
from .notify import Listener
from .periodic import enqueue_due, seconds_to_next_tick
from .runner import Held, RunContext, Runner
from .store import Conn, Lease
from .tracing import TracingObserver, tracing_configured
from .validation import check_name

if TYPE_CHECKING:
    from .app import Queuetopia

logger = logging.getLogger("queuetopia.worker")
T = TypeVar("T")

# While other queues wait for a slot, a runner gives its queue back after this long,
# so the longest-waiting queue goes next and none starves. Never more than
# DRAIN_LIMIT jobs in a row either way.
TURN_SLICE = 0.2
DRAIN_LIMIT = 1000
# Retention: a small batch a minute keeps locks and vacuum work small.
PRUNE_EVERY = 60.0
PRUNE_BATCH = 500
# A lease is trusted locally for this share of lock_ttl after the last renewal that
# started, so the worker stops a job before the database lets its queue go.
TRUST_SHARE = 0.8
# After the shutdown timeout, interrupted jobs get this long to end and be recorded.
INTERRUPT_GRACE = 5.0
# A worker that starts while the database is away tries again after these seconds,
# doubling up to the most.
START_RETRY_FIRST = 0.5
START_RETRY_MAX = 10.0


class Worker:
    def __init__(
        self,
        topia: Queuetopia,
        *,
        concurrency: int,
        queues: list[str] | None = None,
        name: str | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError(f"concurrency must be an int >= 1, got {concurrency!r}")
        self.topia = topia
        self.scope = topia.scope
        self.concurrency = concurrency
        self.queues = [check_name("queue", q) for q in queues] if queues else None
        self.shutdown_timeout = shutdown_timeout
        base = f"{socket.gethostname()}:{os.getpid()}"
        self.node = f"{base}:{name}" if name else base
        self.owner = f"{self.node}:{uuid.uuid4().hex[:12]}"
        self._held: dict[str, Held] = {}
        self._skip: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._hurry = threading.Event()  # a second signal: do not wait for jobs
        self._contended = False
        # Leases for the runner threads, each with its queue's head if it was claimed
        # along with the lease.
        self._work: queue_module.SimpleQueue[tuple[Lease, Job | None] | None] = (
            queue_module.SimpleQueue()
        )
        self._conns: ThreadConnections | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[threading.Thread] = []
        self._heartbeat: Heartbeat | None = None
        self._listener: Listener | None = None
        self.observers: list[Observer] = [LogObserver()]
        self._observers = Observers(self.observers)

    # -- lifecycle ---------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped; in the main thread, SIGTERM/SIGINT stop gracefully and a
        second signal stops at once."""
        if threading.current_thread() is threading.main_thread():
            self._install_signal_handlers()
        self._setup()
        self._run_started()

    def start(self) -> Worker:
        """Run in a background thread (for embedding and tests)."""
        self._setup()
        self._thread = threading.Thread(
            target=self._run_started, name="queuetopia-worker", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, let running jobs finish (up to `timeout`), release the queues."""
        if timeout is not None:
            self.shutdown_timeout = timeout
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running_queues(self) -> list[str]:
        with self._lock:
            return list(self._held)

    @property
    def listener_healthy(self) -> bool:
        return self._listener is not None and self._listener.healthy

    def _run_started(self) -> None:
        try:
            self._loop()
        finally:
            self._shutdown()

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: Any) -> None:
            if self._stopping.is_set():
                logger.warning("second signal: stopping at once")
                self._hurry.set()
                self._interrupt_all("shutdown")
            else:
                logger.info("signal %s: finishing running jobs, then stopping", signum)
                self._stopping.set()
                self._wake.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _setup(self) -> None:
        if tracing_configured():  # a tracer provider must be installed before start
            self.observers.append(TracingObserver())
        if not self._prepare_schema():
            return  # stopped while waiting for the database
        self._conns = ThreadConnections(self.topia.database)
        self._heartbeat = Heartbeat(
            self.topia.database,
            self.scope,
            self.topia.lock_ttl,
            self._held_leases,
            self._renewed,
            self._lost,
            self._fail_stop_if_stuck,
        )
        self._heartbeat.start()
        self._start_listener()
        runner = Runner(
            RunContext(
                self.topia,
                self.node,
                self._bookkeeping,
                self._stopping,
                self._turn_over,
                self._skip_queue,
                self._observers,
            )
        )
        for i in range(self.concurrency):
            thread = threading.Thread(
                target=self._serve, args=(runner,), name=f"queuetopia-runner-{i}", daemon=True
            )
            thread.start()
            self._runners.append(thread)
        logger.info(
            "worker %s started: scope %r, concurrency %d", self.node, self.scope, self.concurrency
        )

    def _prepare_schema(self) -> bool:
        """Migrate if the schema is behind, waiting for the database while it is away
        or restarting, as for any later outage (docs/deploying.md). A refused login or
        an unknown database (ConnectionRejected), a bad DSN or a failed migration is a
        configuration error: it is raised at once. False if stopped meanwhile."""
        delay = START_RETRY_FIRST
        while True:
            try:
                with self.topia.connection() as conn:
                    if len(migrations.applied_versions(conn)) < len(migrations.all_migrations()):
                        migrations.migrate(conn)
                return True
            except ConnectionRejected:
                raise
            except (DatabaseUnavailable, DatabaseConflict) as exc:
                logger.warning(
                    "%s; waiting for it before starting (next try in %.1fs)",
                    str(exc).splitlines()[0],
                    delay,
                )
            if self._stopping.wait(delay):
                return False
            delay = min(delay * 2, START_RETRY_MAX)

    def _start_listener(self) -> None:
        self._listener = Listener(
            self.topia.listen_database,
            self.scope,
            self._notified,
            on_health=self._observers.listener_health,
            on_exit=self._wake.set,  # the loop starts a new one
        )
        self._listener.start()

    def _supervise_listener(self) -> None:
        """Start a new listener if the thread of the last one ended: nothing may leave
        the worker only as reactive as its polls."""
        listener = self._listener
        if listener is not None and not listener.alive() and not self._stopping.is_set():
            logger.warning("listener thread ended; starting a new one")
            self._start_listener()

    def _shutdown(self) -> None:
        self._wait_for_runners(self.shutdown_timeout)
        if self.running_queues:
            logger.warning(
                "shutdown timeout: interrupting %d running jobs", len(self.running_queues)
            )
            self._interrupt_all("shutdown")
            self._wait_for_runners(INTERRUPT_GRACE)
        for _ in self._runners:
            self._work.put(None)
        if self._listener:
            self._listener.stop()
        if not self.running_queues:
            for thread in self._runners:  # let them close their event loops
                thread.join(timeout=2.0)
            # A job stuck in a C call keeps its heartbeat, so no retry can overlap it.
            if self._heartbeat:
                self._heartbeat.stop()
            if self._conns:
                self._conns.close_all()
        self._stopped.set()
        logger.info("worker %s stopped", self.node)

    def _wait_for_runners(self, seconds: float) -> None:
        """Wait until no queue is held, `seconds` pass, or a second signal hurries us
        (then interrupted jobs get one second to record their outcome)."""
        deadline = time.monotonic() + seconds
        while self.running_queues and time.monotonic() < deadline:
            if self._hurry.is_set():
                deadline = min(deadline, time.monotonic() + 1.0)
            time.sleep(0.01)

    def _interrupt_all(self, reason: str) -> None:
        with self._lock:
            helds = list(self._held.values())
        for held in helds:
            if held.execution is not None:
                held.execution.interrupt(reason)

    # -- the loop ----------------------------------------------------------------

    def _loop(self) -> None:
        next_prune = time.monotonic() + PRUNE_EVERY / 10
        next_tick = time.monotonic()
        while not self._stopping.is_set():
            self._wake.clear()
            self._supervise_listener()
            try:
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self._enqueue_periodics()
                again = self._fill_slots()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY
                    self._prune()
                wait = 0.0 if again else self._next_wait()
                wait = max(
                    min(wait, next_prune - time.monotonic(), next_tick - time.monotonic()), 0
                )
            except Exception:
                # Transient errors are retried below this; anything else must not kill
                # the loop that every queue of this worker depends on.
                logger.exception("worker loop error; continuing")
                wait = 1.0
            if not self._stopping.is_set():
                self._wake.wait(wait)

    def _fill_slots(self) -> bool:
        """Lease due queues for the free slots; True if it should look again at once."""
        with self._lock:
            free = self.concurrency - len(self._held)
        skip = self._active_skips()
        if free <= 0:
            self._contended = self._bookkeeping(
                lambda c: store.queue_any_due(c, scope=self.scope, queues=self.queues, skip=skip)
            )
            return False
        started = time.monotonic()
        taken, candidates = self._bookkeeping(self._acquire(free, skip))
        self._contended = candidates > free
        with self._lock:
            for lease, _ in taken:
                self._held[lease.queue] = Held(lease, started + self._trust_window())
        for item in taken:
            self._work.put(item)
        # Other workers won some of the queues we went for: more may be due, look now.
        return len(taken) < min(free, candidates)

    def _acquire(
        self, free: int, skip: list[str]
    ) -> Callable[[Conn], tuple[list[tuple[Lease, Job | None]], int]]:
        """The acquisition, as bookkeeping retries it: a try after a failed one first
        adopts the leases an earlier try took but whose reply was lost (their heads
        are claimed: the runner finds them running under the adopted lease)."""
        tries = 0

        def acquire(conn: Conn) -> tuple[list[tuple[Lease, Job | None]], int]:
            nonlocal tries
            tries += 1
            adopted: list[tuple[Lease, Job | None]] = []
            if tries > 1:
                with self._lock:
                    known = {held.lease.lease_id for held in self._held.values()}
                owned = store.lease_owned(conn, scope=self.scope, owner=self.owner)
                adopted = [(lease, None) for lease in owned if lease.lease_id not in known]
            if len(adopted) >= free:
                return adopted, len(adopted)
            taken, candidates = store.lease_acquire(
                conn,
                scope=self.scope,
                owner=self.owner,
                limit=free - len(adopted),
                ttl=self.topia.lock_ttl,
                queues=self.queues,
                skip=skip,
                node=self.node,
            )
            return adopted + taken, candidates + len(adopted)

        return acquire

    def _next_wait(self) -> float:
        wait = self.topia.poll_interval
        due = self._bookkeeping(
            lambda c: store.queue_next_due(
                c, scope=self.scope, owner=self.owner, queues=self.queues
            )
        )
        if due is not None:
            wait = min(wait, max(due, 0.0) + 0.001)
        now = time.monotonic()
        with self._lock:
            for expiry in self._skip.values():
                wait = min(wait, max(expiry - now, 0.0))
        return wait

    def _enqueue_periodics(self) -> float:
        """Enqueue the due ticks of periodic jobs; return seconds until the next tick."""
        periodics = self.topia.periodics
        if not periodics:
            return float("inf")

        def run(conn: Conn) -> float:
            for periodic in periodics:
                enqueue_due(conn, self.topia, periodic)
            wait = seconds_to_next_tick(periodics, store.db_now(conn))
            return float("inf") if wait is None else wait + 0.001

        return self._bookkeeping(run)

    def _prune(self) -> None:
        """Delete finished jobs past job_retention: one batch, one worker per scope."""
        retention = self.topia.job_retention
        if retention is None:
            return

        def batch(conn: Conn) -> int:
            with conn.transaction():
                if not store.prune_lock(conn, scope=self.scope):
                    return 0
                return store.job_prune_batch(
                    conn,
                    scope=self.scope,
                    older_than=retention.total_seconds(),
                    batch=PRUNE_BATCH,
                )

        deleted = self._bookkeeping(batch)
        if deleted:
            logger.info("pruned %d finished jobs older than %s", deleted, retention)

    def _active_skips(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            for queue, expiry in list(self._skip.items()):
                if expiry <= now:
                    del self._skip[queue]
            return list(self._skip)

    def _skip_queue(self, queue: str) -> None:
        with self._lock:
            self._skip[queue] = time.monotonic() + self.topia.poll_interval

    def _notified(self, queue: str) -> None:
        with self._lock:
            if queue:
                self._skip.pop(queue, None)
            else:
                self._skip.clear()
        self._wake.set()

    def _turn_over(self, ran: int, elapsed: float) -> bool:
        return ran >= DRAIN_LIMIT or (self._contended and elapsed >= TURN_SLICE)

    # -- runners -------------------------------------------------------------------

    def _serve(self, runner: Runner) -> None:
        while True:
            item = self._work.get()
            if item is None:
                close_thread_loop(self.topia.close_async_pool)
                return
            lease, first = item
            held = self._held_for(lease)
            try:
                if held is not None:
                    runner.drain(held, first)
            except Exception:
                logger.exception("runner failed on queue %r", lease.queue)
            finally:
                with self._lock:
                    # The loop may already hold the queue again under a new lease
                    # (taken after our release): leave that one alone.
                    if self._held.get(lease.queue) is held:
                        del self._held[lease.queue]
                self._wake.set()

    # -- leases ------------------------------------------------------------------

    def _trust_window(self) -> float:
        return self.topia.lock_ttl * TRUST_SHARE

    def _held_for(self, lease: Lease) -> Held | None:
        with self._lock:
            held = self._held.get(lease.queue)
        return held if held is not None and held.lease.lease_id == lease.lease_id else None

    def _held_leases(self) -> list[tuple[Lease, float]]:
        with self._lock:
            return [(h.lease, h.trusted_until) for h in self._held.values()]

    def _renewed(self, lease: Lease, started: float) -> None:
        held = self._held_for(lease)
        if held is not None:
            held.trusted_until = started + self._trust_window()

    def _lost(self, lease: Lease) -> None:
        held = self._held_for(lease)
        if held is not None and not held.lost:
            self._observers.lease_lost(lease.queue)
            held.lose()

    def _fail_stop_if_stuck(self, now: float) -> float:
        """Exit the process if an execution outlived its lost lease by the grace
        (queuetopia/failstop.py); return when to look again."""
        grace = self.topia.lock_ttl * failstop.GRACE_SHARE
        look_again = float("inf")
        with self._lock:
            helds = list(self._held.values())
        for held in helds:
            since = failstop.stuck_since(held)
            if since is None:
                continue
            if now >= since + grace:
                failstop.fail_stop(held)
            look_again = min(look_again, since + grace)
        return look_again

    def _bookkeeping(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn` on this thread's connection, retrying while the database is
        unavailable (until the worker has stopped)."""
        conns = self._conns
        assert conns is not None

        def attempt() -> T:
            try:
                with translate_errors():
                    return fn(conns.get())
            except DatabaseUnavailable:
                conns.discard()
                raise

        return retry_bookkeeping(attempt, stop=self._stopped.is_set)
