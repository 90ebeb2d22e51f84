"""The worker: its lifecycle. It runs the dispatcher (dispatcher.py) on an event loop
of its own thread, with a heartbeat (heartbeat.py) and a listener (db/notify.py)
beside it, each on a connection of its own; housekeeping (house.py) has the fourth.
No transaction is ever open while an action runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from typing import Any

from .. import migrations
from ..backoff import jittered
from ..db.notify import Listener
from ..engine import Engine
from ..errors import ConnectionRejected, DatabaseConflict, DatabaseUnavailable
from ..events import LogObserver, Observer, Observers
from ..tracing import TracingObserver, tracing_configured
from ..validation import check_concurrency, check_name, check_prefetch
from .dispatcher import Dispatcher, Kit
from .heartbeat import Heartbeat
from .holds import Hold, Holds, node_identity
from .house import House
from .stepper import Stepper

logger = logging.getLogger("queuetopia.worker")

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
        prefetch: int | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings = engine.settings
        self.scope = settings.scope
        self.concurrency = check_concurrency(concurrency)
        self.prefetch = check_prefetch(prefetch, self.concurrency)
        self.queues = [check_name("queue", q) for q in queues] if queues else None
        self.shutdown_timeout = shutdown_timeout
        self.node, self.owner = node_identity(name)
        self.observers: list[Observer] = [LogObserver()]
        self._observers = Observers(self.observers)
        self._holds = Holds(settings.lock_ttl)
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher: Dispatcher | None = None
        self._hurry: asyncio.Event | None = None  # a second signal: do not wait for jobs
        self._thread: threading.Thread | None = None
        self._heartbeat: Heartbeat | None = None
        self._listener: Listener | None = None
        self._house: House | None = None

    # -- lifecycle ---------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped; in the main thread, SIGTERM/SIGINT stop gracefully and a
        second signal stops at once."""
        if threading.current_thread() is threading.main_thread():
            self._install_signal_handlers()
        if self._setup():
            self._serve()

    def start(self) -> Worker:
        """Run in a background thread (for embedding and tests)."""
        if self._setup():
            self._thread = threading.Thread(
                target=self._serve, name="queuetopia-worker", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, let running jobs finish (up to `timeout`), release the queues."""
        if timeout is not None:
            self.shutdown_timeout = timeout
        self._stopping.set()
        self._call_soon(self._begin_stop)
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running_queues(self) -> list[str]:
        """The queues this worker runs a job of now."""
        return self._dispatcher.running_queues() if self._dispatcher else []

    @property
    def held_queues(self) -> list[str]:
        """The queues this worker holds a lease on, running or not."""
        return self._holds.queues()

    @property
    def listener_healthy(self) -> bool:
        return self._listener is not None and self._listener.healthy

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: Any) -> None:
            if self._stopping.is_set():
                logger.warning("second signal: stopping at once")
                self._call_soon(self._hurry_stop)
            else:
                logger.info("signal %s: finishing running jobs, then stopping", signum)
                self._stopping.set()
                self._call_soon(self._begin_stop)

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _call_soon(self, fn: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing to stop
                loop.call_soon_threadsafe(fn)

    def _setup(self) -> bool:
        """Prepare everything but the loop's thread; False if stopped meanwhile."""
        if tracing_configured():  # a tracer provider must be installed before start
            self.observers.append(TracingObserver())
        if not self._prepare_schema():
            return False
        s, engine = self.settings, self.engine
        self._loop = asyncio.new_event_loop()
        self._hurry = asyncio.Event()
        self._house = House(engine.database, self._stopped.is_set)
        stepper = Stepper(
            engine.database,
            scope=self.scope,
            owner=self.owner,
            node=self.node,
            ttl=s.lock_ttl,
            stopped=self._stopped.is_set,
        )
        kit = Kit(
            s,
            engine.registry,
            engine.producer,
            self._observers,
            self.concurrency,
            self.queues,
            self.owner,
            self.node,
            self.prefetch,
        )
        self._dispatcher = Dispatcher(kit, self._holds, stepper, self._house)
        self._heartbeat = Heartbeat(
            engine.database, self.scope, s.lock_ttl, self._holds, on_lost=self._lost
        )
        self._heartbeat.start()
        self._start_listener()
        logger.info(
            "worker %s started: scope %r, concurrency %d", self.node, self.scope, self.concurrency
        )
        return True

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
                wait = jittered(delay)
                logger.warning(
                    "%s; waiting for it before starting (next try in %.1fs)",
                    str(exc).splitlines()[0],
                    wait,
                )
            if self._stopping.wait(wait):
                return False
            delay = min(delay * 2, START_RETRY_MAX)

    def _start_listener(self) -> None:
        self._listener = Listener(
            self.engine.listen_database,
            self.scope,
            self._notified,
            on_health=self._observers.listener_health,
            on_exit=self._listener_ended,
            on_cancel=self._holds.cancel,
        )
        self._listener.start()

    def _listener_ended(self) -> None:
        """The listener's thread ended before the worker stopped: nothing may leave the
        worker only as reactive as its polls."""
        if not self._stopping.is_set():
            logger.warning("listener thread ended; starting a new one")
            self._start_listener()

    def _notified(self, queue: str) -> None:
        """From the listener's thread."""
        dispatcher = self._dispatcher
        if dispatcher is not None:
            self._call_soon(lambda: dispatcher.notified(queue))

    def _lost(self, hold: Hold) -> None:
        """From the heartbeat's threads."""
        self._observers.lease_lost(hold.queue)
        dispatcher = self._dispatcher
        if dispatcher is not None:
            self._call_soon(lambda: dispatcher.lost(hold))

    # -- the loop's thread ---------------------------------------------------------

    def _serve(self) -> None:
        loop, dispatcher = self._loop, self._dispatcher
        assert loop is not None and dispatcher is not None
        asyncio.set_event_loop(loop)
        try:
            if not self._stopping.is_set():
                loop.run_until_complete(dispatcher.run())
            loop.run_until_complete(self._shutdown(dispatcher))
        finally:
            self._close(loop, dispatcher)

    def _begin_stop(self) -> None:
        """On the loop: make the dispatcher's run() end (the shutdown follows)."""
        if self._dispatcher is not None:
            self._dispatcher.stopping = True
            self._dispatcher.notified("")  # wakes its loop

    def _hurry_stop(self) -> None:
        if self._hurry is not None:
            self._hurry.set()
        self._begin_stop()

    async def _shutdown(self, dispatcher: Dispatcher) -> None:
        assert self._hurry is not None
        await dispatcher.stop(self.shutdown_timeout, INTERRUPT_GRACE, self._hurry)
        await self.engine.close_loop()  # what async actions opened on this loop
        await dispatcher.stepper.close()

    def _close(self, loop: asyncio.AbstractEventLoop, dispatcher: Dispatcher) -> None:
        if self._listener:
            self._listener.stop()
        if not dispatcher.running_queues():
            # A job stuck in a C call keeps its heartbeat, so no retry can overlap it.
            if self._heartbeat:
                self._heartbeat.stop()
            dispatcher.runner.close()
        self._stopped.set()
        if self._house is not None:
            self._house.close()
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
        logger.info("worker %s stopped", self.node)
