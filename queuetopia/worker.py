"""The worker loop: wait (notify, poll, next due time), take leases on due queues,
run their heads one at a time per queue, record each outcome under the lease.

Threads: the loop (the caller's thread for `run()`), `concurrency` runners that each
work one leased queue at a time, a heartbeat and a listener. No transaction is ever
open while an action runs."""

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg_pool import ConnectionPool

from . import migrations, store
from .backoff import default_backoff, retry_bookkeeping
from .database import open_pool
from .errors import QueuetopiaError, ValidationError, redact
from .executor import Execution, Outcome, execute
from .heartbeat import Heartbeat
from .models import Job
from .notify import Listener
from .store import Claim, Conn, Lease
from .validation import check_name

if TYPE_CHECKING:
    from .app import Queuetopia

logger = logging.getLogger("queuetopia.worker")
T = TypeVar("T")

# A runner keeps draining its queue only while no other queue waits for a slot, and
# never for more than this many jobs in a row.
DRAIN_LIMIT = 100
# Retention: a small batch per minute keeps locks and vacuum work small.
PRUNE_EVERY = 60.0
PRUNE_BATCH = 500


@dataclass
class Held:
    """A queue this worker holds a lease on."""

    lease: Lease
    trusted_until: float
    lost: bool = False
    execution: Execution | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


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
        self._contended = False
        self._work: queue_module.SimpleQueue[Lease | None] = queue_module.SimpleQueue()
        self._pool: ConnectionPool | None = None
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
        try:
            self._loop()
        finally:
            self._shutdown()

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

    def _run_started(self) -> None:
        try:
            self._loop()
        finally:
            self._shutdown()

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: Any) -> None:
            if self._stopping.is_set():
                logger.warning("second signal: stopping at once")
                self._interrupt_all("shutdown")
            else:
                logger.info("signal %s: finishing running jobs, then stopping", signum)
                self._stopping.set()
                self._wake.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _setup(self) -> None:
        dsn = self.topia.dsn
        with self.topia.connection() as conn:
            if len(migrations.applied_versions(conn)) < len(migrations.all_migrations()):
                migrations.migrate(conn)
        self._pool = open_pool(dsn, max_size=self.concurrency + 1, name="queuetopia-worker")
        self._heartbeat = Heartbeat(
            dsn, self.scope, self.topia.lock_ttl, self._held_leases, self._renewed, self._lost
        )
        self._listener = Listener(dsn, self.scope, self._notified)
        self._heartbeat.start()
        self._listener.start()
        for i in range(self.concurrency):
            runner = threading.Thread(
                target=self._runner, name=f"queuetopia-runner-{i}", daemon=True
            )
            runner.start()
            self._runners.append(runner)
        logger.info(
            "worker %s started: scope %r, concurrency %d", self.node, self.scope, self.concurrency
        )

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.shutdown_timeout
        while self.running_queues and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.running_queues:
            logger.warning(
                "shutdown timeout: interrupting %d running jobs", len(self.running_queues)
            )
            self._interrupt_all("shutdown")
            grace = time.monotonic() + 5.0
            while self.running_queues and time.monotonic() < grace:
                time.sleep(0.01)
        for _ in self._runners:
            self._work.put(None)
        if self._listener:
            self._listener.stop()
        if not self.running_queues:
            # Jobs stuck in a C call keep their heartbeat, so no retry can overlap them.
            if self._heartbeat:
                self._heartbeat.stop()
            if self._pool:
                self._pool.close()
        self._stopped.set()
        logger.info("worker %s stopped", self.node)

    def _interrupt_all(self, reason: str) -> None:
        with self._lock:
            helds = list(self._held.values())
        for held in helds:
            if held.execution is not None:
                held.execution.interrupt(reason)

    # -- the loop ----------------------------------------------------------------

    def _loop(self) -> None:
        next_prune = time.monotonic() + PRUNE_EVERY / 10
        while not self._stopping.is_set():
            self._wake.clear()
            self._fill_slots()
            if time.monotonic() >= next_prune:
                self._prune()
                next_prune = time.monotonic() + PRUNE_EVERY
            if self._stopping.is_set():
                break
            until_prune = max(next_prune - time.monotonic(), 0.0)
            self._wake.wait(min(self._next_wait(), until_prune))

    def _prune(self) -> None:
        """Delete finished jobs past job_retention: one batch, one worker per scope."""
        retention = self.topia.job_retention
        if retention is None:
            return

        def batch(conn: Conn) -> int:
            if not store.prune_lock(conn, scope=self.scope):
                return 0
            return store.job_prune_batch(
                conn, scope=self.scope, older_than=retention.total_seconds(), batch=PRUNE_BATCH
            )

        deleted = self._bookkeeping(batch)
        if deleted:
            logger.info("pruned %d finished jobs older than %s", deleted, retention)

    def _fill_slots(self) -> None:
        with self._lock:
            free = self.concurrency - len(self._held)
        skip = self._active_skips()
        if free <= 0:
            self._contended = self._bookkeeping(
                lambda c: store.queue_any_due(c, scope=self.scope, queues=self.queues, skip=skip)
            )
            return
        started = time.monotonic()
        leases = self._bookkeeping(
            lambda c: store.lease_acquire(
                c,
                scope=self.scope,
                owner=self.owner,
                limit=free,
                ttl=self.topia.lock_ttl,
                queues=self.queues,
                skip=skip,
            )
        )
        self._contended = len(leases) >= free
        trusted_until = started + self._trust_window()
        with self._lock:
            for lease in leases:
                self._held[lease.queue] = Held(lease, trusted_until)
        for lease in leases:
            self._work.put(lease)

    def _next_wait(self) -> float:
        wait = self.topia.poll_interval
        due = self._bookkeeping(
            lambda c: store.queue_next_due(c, scope=self.scope, queues=self.queues)
        )
        if due is not None:
            wait = min(wait, max(due, 0.0) + 0.001)
        now = time.monotonic()
        for expiry in self._skip.copy().values():
            wait = min(wait, max(expiry - now, 0.0))
        return wait

    def _active_skips(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            for queue, expiry in list(self._skip.items()):
                if expiry <= now:
                    del self._skip[queue]
            return list(self._skip)

    def _notified(self, queue: str) -> None:
        with self._lock:
            if queue:
                self._skip.pop(queue, None)
            else:
                self._skip.clear()
        self._wake.set()

    def _trust_window(self) -> float:
        # Stop trusting a lease a little before the database lets it go.
        return self.topia.lock_ttl * 0.8

    # -- running one queue -------------------------------------------------------

    def _runner(self) -> None:
        while True:
            lease = self._work.get()
            if lease is None:
                return
            try:
                self._drain(lease)
            except Exception:
                logger.exception("runner failed on queue %r", lease.queue)
            finally:
                with self._lock:
                    self._held.pop(lease.queue, None)
                self._wake.set()

    def _drain(self, lease: Lease) -> None:
        held = self._held_for(lease)
        if held is None:
            return
        ran, runnable = 0, False
        try:
            while not held.lost and not self._stopping.is_set() and ran < DRAIN_LIMIT:
                claim = self._bookkeeping(
                    lambda c: store.job_claim_head(c, scope=self.scope, lease=lease, node=self.node)
                )
                runnable = self._handle_claim(held, claim)
                if not runnable:
                    break
                ran += 1
                if self._contended:
                    break
        finally:
            self._release(held, nothing_runnable=not runnable)

    def _handle_claim(self, held: Held, claim: Claim) -> bool:
        """Act on what the claim found; True when the queue may have more to run now."""
        if not claim.leased:
            held.lost = True
            return False
        head = claim.head
        if head is None:
            return False
        if claim.claimed:
            outcome = self._perform(held, head)
            self._record(held, head, outcome)
            return outcome.ok
        if head.state == "running":
            self._record(
                held, head, Outcome(ok=False, error=f"worker lost: {head.attempted_by} stopped")
            )
            return True
        return False

    def _perform(self, held: Held, job: Job) -> Outcome:
        logger.info("start %s", _describe(job))
        started = time.monotonic()

        def on_start(execution: Execution) -> None:
            with held.lock:
                held.execution = execution
                if held.lost:
                    execution.interrupt("lease lost")

        outcome = execute(job, self.topia.actions.get(job.action), on_start)
        with held.lock:
            held.execution = None
        took = time.monotonic() - started
        verdict = "done" if outcome.ok else (outcome.error or "failed").splitlines()[0]
        logger.info("end %s in %.3fs: %s", _describe(job), took, verdict)
        return outcome

    def _record(self, held: Held, job: Job, outcome: Outcome) -> None:
        state, backoff = self._next_state(job, outcome)
        recorded = self._bookkeeping(
            lambda c: store.job_record(
                c,
                scope=self.scope,
                lease=held.lease,
                job=job,
                state=state,
                error=outcome.error,
                result=outcome.result,
                backoff=backoff,
            )
        )
        if recorded is None and not self._committed_before(held, job):
            held.lost = True
            logger.warning("lease lost on queue %r: outcome of job %d discarded", job.queue, job.id)
            return
        if not outcome.ok:
            self._call_failure_hooks(held, recorded or job, outcome)

    def _committed_before(self, held: Held, job: Job) -> bool:
        """After a retried write: did our first try commit although its reply was lost?"""
        current = self._bookkeeping(lambda c: store.job_get(c, scope=self.scope, job_id=job.id))
        return (
            current is not None
            and current.state != "running"
            and current.lease_id == job.lease_id
            and current.attempts == job.attempts
        )

    def _next_state(self, job: Job, outcome: Outcome) -> tuple[str, float | None]:
        if outcome.ok:
            return "done", None
        if outcome.interrupted == "shutdown":
            return "pending", 0.0
        if job.attempts >= job.max_attempts:
            return "failed", None
        return "pending", self._backoff(job)

    def _backoff(self, job: Job) -> float:
        action = self.topia.actions.get(job.action)
        if action is None or action.config.backoff is None:
            return default_backoff(job.attempts, job.max_backoff)
        try:
            return max(0.0, float(action.config.backoff(job)))
        except Exception:
            logger.exception("backoff of action %r failed; using the default", job.action)
            return default_backoff(job.attempts, job.max_backoff)

    def _call_failure_hooks(self, held: Held, job: Job, outcome: Outcome) -> None:
        """Hooks run after the failed attempt is recorded; one that raises is logged and
        noted on the job, and never stops the worker."""
        action = self.topia.actions.get(job.action)
        hooks = [action.on_failure if action else None, self.topia.on_failure]
        error = outcome.exception or QueuetopiaError((outcome.error or "failed").splitlines()[0])
        for hook in hooks:
            if hook is None:
                continue
            try:
                hook(job, error)
            except Exception as exc:
                logger.exception("on_failure hook for job %d raised", job.id)
                self._note_error(held, job, f"on_failure hook raised: {type(exc).__name__}: {exc}")

    def _note_error(self, held: Held, job: Job, note: str) -> None:
        text = redact(f"\n\n{note}")
        self._bookkeeping(
            lambda c: store.job_note_error(
                c, scope=self.scope, lease=held.lease, job_id=job.id, note=text
            )
        )

    def _release(self, held: Held, *, nothing_runnable: bool) -> None:
        refreshed = self._bookkeeping(
            lambda c: store.lease_release(c, scope=self.scope, lease=held.lease)
        )
        if nothing_runnable and not refreshed:
            # A producer holds the queue row, so ready_at stays early; look again after
            # its notification, or at the next poll, rather than spinning on it.
            with self._lock:
                self._skip[held.lease.queue] = time.monotonic() + self.topia.poll_interval

    # -- leases ------------------------------------------------------------------

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
        if held is None:
            return
        with held.lock:
            held.lost = True
            execution = held.execution
        logger.warning("lost the lease on queue %r", lease.queue)
        if execution is not None:
            execution.interrupt("lease lost")

    def _bookkeeping(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn` on a pooled connection in one transaction, retrying while the
        database is unavailable (unless the worker must stop at once)."""
        pool = self._pool
        assert pool is not None

        def attempt() -> T:
            from .errors import translate_errors

            with translate_errors(), pool.connection() as conn:
                return fn(conn)

        return retry_bookkeeping(attempt, stop=lambda: self._stopped.is_set())


def _describe(job: Job) -> str:
    return (
        f"job {job.id} queue={job.queue!r} action={job.action!r} "
        f"attempt={job.attempts}/{job.max_attempts}"
    )
