"""The worker: its lifecycle and its loop. The loop waits (notification, poll, next due
time, a runner's release), takes leases on due queues for free slots, and hands each
to a runner thread (runner.py). A heartbeat and a listener run beside it.
No transaction is ever open while an action runs."""

from __future__ import annotations

import logging
import queue as queue_module
import signal
import threading
import time
from typing import Any

from . import migrations
from .bookkeeper import Bookkeeper
from .completer import Completer
from .db import store
from .db.notify import Listener
from .db.store import Conn, Lease
from .engine import Engine
from .errors import ConnectionRejected, DatabaseConflict, DatabaseUnavailable
from .events import LogObserver, Observer, Observers
from .executor import close_thread_loop
from .fairness import Skips, Turns
from .heartbeat import Heartbeat
from .leases import Leases, node_identity
from .models import Interrupt, Job
from .periodic import seconds_to_next_tick
from .runner import Runner
from .scheduling import enqueue_due
from .tracing import TracingObserver, tracing_configured
from .validation import check_concurrency, check_name

logger = logging.getLogger("queuetopia.worker")

# Retention: a small batch a minute keeps locks and vacuum work small.
PRUNE_EVERY = 60.0
PRUNE_BATCH = 500
# After the shutdown timeout, interrupted jobs get this long to end and be recorded.
INTERRUPT_GRACE = 5.0
# A worker that starts while the database is away tries again after these seconds,
# doubling up to the most.
START_RETRY_FIRST = 0.5
START_RETRY_MAX = 10.0


class Worker:
    def __init__(
        self,
        engine: Engine,
        *,
        concurrency: int,
        queues: list[str] | None = None,
        name: str | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.engine = engine
        self.settings = settings = engine.settings
        self.scope = settings.scope
        self.concurrency = check_concurrency(concurrency)
        self.queues = [check_name("queue", q) for q in queues] if queues else None
        self.shutdown_timeout = shutdown_timeout
        self.node, self.owner = node_identity(name)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._hurry = threading.Event()  # a second signal: do not wait for jobs
        self.observers: list[Observer] = [LogObserver()]
        self._observers = Observers(self.observers)
        self._leases = Leases(settings.lock_ttl, self._observers)
        self._skips = Skips(settings.poll_interval)
        self._turns = Turns()
        # Leases for the runner threads, each with its queue's head if it was claimed
        # along with the lease.
        self._work: queue_module.SimpleQueue[tuple[Lease, Job | None] | None] = (
            queue_module.SimpleQueue()
        )
        self._book = Bookkeeper(engine.database, self._stopped.is_set)  # the loop's
        self._completer_book: Bookkeeper | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[threading.Thread] = []
        self._heartbeat: Heartbeat | None = None
        self._listener: Listener | None = None

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
        return self._leases.queues()

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
                self._leases.interrupt_all(Interrupt.SHUTDOWN)
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
        s, engine = self.settings, self.engine
        self._heartbeat = Heartbeat(engine.database, self.scope, s.lock_ttl, self._leases)
        self._heartbeat.start()
        self._start_listener()
        # The completer's connections and retries are its own (one per runner thread).
        self._completer_book = Bookkeeper(engine.database, self._stopped.is_set)
        completer = Completer(
            self.scope,
            self.node,
            engine.registry,
            self._completer_book,
            self._observers,
            self._stopping,
        )
        runner = Runner(
            completer,
            engine.registry,
            turns=self._turns,
            skips=self._skips,
            stopping=self._stopping,
            observers=self._observers,
            max_result_bytes=s.max_result_bytes,
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
                migrations.ensure_current(self.engine.database)
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
            self.engine.listen_database,
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
            self._leases.interrupt_all(Interrupt.SHUTDOWN)
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
            self._book.close()
            if self._completer_book is not None:
                self._completer_book.close()
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
        free = self.concurrency - self._leases.count()
        skip = self._skips.active()
        if free <= 0:
            self._turns.contended = self._book(
                lambda c: store.queue_any_due(c, scope=self.scope, queues=self.queues, skip=skip)
            )
            return False
        started = time.monotonic()
        taken, candidates = self._book(_Acquisition(self, free, skip))
        self._turns.contended = candidates > free
        for lease, _ in taken:
            self._leases.take(lease, started)
        for item in taken:
            self._work.put(item)
        # Other workers won some of the queues we went for: more may be due, look now.
        return len(taken) < min(free, candidates)

    def _next_wait(self) -> float:
        wait = self.settings.poll_interval
        due = self._book(
            lambda c: store.queue_next_due(
                c, scope=self.scope, owner=self.owner, queues=self.queues
            )
        )
        if due is not None:
            wait = min(wait, max(due, 0.0) + 0.001)
        return self._skips.next_expiry_in(wait)

    def _enqueue_periodics(self) -> float:
        """Enqueue the due ticks of periodic jobs; return seconds until the next tick."""
        periodics = self.engine.registry.periodics
        if not periodics:
            return float("inf")

        def run(conn: Conn) -> float:
            for periodic in periodics:
                enqueue_due(conn, self.engine.producer, periodic)
            wait = seconds_to_next_tick(periodics, store.db_now(conn))
            return float("inf") if wait is None else wait + 0.001

        return self._book(run)

    def _prune(self) -> None:
        """Delete finished jobs past job_retention: one batch, one worker per scope."""
        retention = self.settings.job_retention
        if retention is None:
            return
        deleted = self._book(
            lambda c: store.job_prune_turn(
                c, scope=self.scope, older_than=retention.total_seconds(), batch=PRUNE_BATCH
            )
        )
        if deleted:
            logger.info("pruned %d finished jobs older than %s", deleted, retention)

    def _notified(self, queue: str) -> None:
        self._skips.notified(queue)
        self._wake.set()

    # -- runners -------------------------------------------------------------------

    def _serve(self, runner: Runner) -> None:
        while True:
            item = self._work.get()
            if item is None:
                close_thread_loop(self.engine.close_loop)
                return
            lease, first = item
            held = self._leases.get(lease)
            try:
                if held is not None:
                    runner.drain(held, first)
            except Exception:
                logger.exception("runner failed on queue %r", lease.queue)
            finally:
                if held is not None:
                    self._leases.give_back(held)
                self._wake.set()


class _Acquisition:
    """One acquisition, as the bookkeeper retries it: a try after a failed one first
    adopts the leases an earlier try took but whose reply was lost (their heads are
    claimed: the runner finds them running under the adopted lease)."""

    def __init__(self, worker: Worker, free: int, skip: list[str]) -> None:
        self.worker, self.free, self.skip = worker, free, skip
        self.tries = 0

    def __call__(self, conn: Conn) -> tuple[list[tuple[Lease, Job | None]], int]:
        w = self.worker
        self.tries += 1
        adopted: list[tuple[Lease, Job | None]] = []
        if self.tries > 1:
            known = w._leases.ids()
            owned = store.lease_owned(conn, scope=w.scope, owner=w.owner)
            adopted = [(lease, None) for lease in owned if lease.lease_id not in known]
        if len(adopted) >= self.free:
            return adopted, len(adopted)
        taken, candidates = store.lease_acquire(
            conn,
            scope=w.scope,
            owner=w.owner,
            limit=self.free - len(adopted),
            ttl=w.settings.lock_ttl,
            queues=w.queues,
            skip=self.skip,
            node=w.node,
        )
        return adopted + taken, candidates + len(adopted)
