"""Runs attempts: an `async def` action as a task on the worker's event loop, a plain
one on a bounded pool of threads (at most one per slot, made as they are needed). A
job in flight costs a coroutine or a pooled thread, never a connection
(docs/deploying.md). Each attempt's outcome goes back to the loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..actions import Action
from ..events import Observers
from ..models import Job, Outcome
from ..registry import Registry
from .executor import execute, execute_async
from .holds import Hold

logger = logging.getLogger("queuetopia.worker")

# Called on the loop when an attempt ends: the hold, the job, how it ended, and how
# many seconds it ran.
Ended = Callable[[Hold, Job, Outcome, float], None]


class Runner:
    def __init__(
        self,
        registry: Registry,
        observers: Observers,
        *,
        threads: int,
        max_result_bytes: int,
        ended: Ended,
    ) -> None:
        self._registry, self._observers = registry, observers
        self._max_result_bytes = max_result_bytes
        self._ended = ended
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="queuetopia-runner")
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    def start(self, hold: Hold, job: Job) -> None:
        """Start the attempt of `job` (claimed under `hold`); on the loop."""
        action = self._registry.get(job.action)
        if action is not None and action.schema.takes_job:
            job = hold.fenced(job)
        loop = asyncio.get_running_loop()
        if action is not None and action.is_async:
            task = loop.create_task(self._run_async(hold, job, action))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.pool.submit(self._run_sync, loop, hold, job, action)

    def _run_sync(
        self,
        loop: asyncio.AbstractEventLoop,
        hold: Hold,
        job: Job,
        action: Action[Any, Any] | None,
    ) -> None:
        """In a pool thread."""
        self._observers.job_started(job)
        started = time.monotonic()
        try:
            outcome = execute(job, action, lambda e: hold.started(e, job), self._max_result_bytes)
        finally:
            hold.ended()
        ran = time.monotonic() - started
        self._observers.job_ended(job, outcome, ran)
        try:
            loop.call_soon_threadsafe(self._ended, hold, job, outcome, ran)
        except RuntimeError:  # the loop closed: a worker stopped at once
            logger.warning("job %d of queue %r ended after its worker stopped", job.id, job.queue)

    async def _run_async(self, hold: Hold, job: Job, action: Action[Any, Any]) -> None:
        self._observers.job_started(job)
        started = time.monotonic()
        try:
            outcome = await execute_async(
                job, action, lambda e: hold.started(e, job), self._max_result_bytes
            )
        finally:
            hold.ended()
        ran = time.monotonic() - started
        self._observers.job_ended(job, outcome, ran)
        self._ended(hold, job, outcome, ran)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
