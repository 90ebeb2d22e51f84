"""Drains one leased queue: run its head, hand the outcome to the completer and get
the next head back (claimed in the same statement), until nothing more is runnable
now, the lease is lost, the worker stops, or another queue's turn has come. Then give
the queue back."""

from __future__ import annotations

import logging
import threading
import time

from .completer import Completer
from .events import Observers
from .executor import Execution, execute
from .fairness import Skips, Turns
from .leases import Held
from .models import Interrupt, Job, Outcome
from .registry import Registry

logger = logging.getLogger("queuetopia.worker")


class Runner:
    """Shared by a worker's runner threads."""

    def __init__(
        self,
        completer: Completer,
        registry: Registry,
        *,
        turns: Turns,
        skips: Skips,
        stopping: threading.Event,
        observers: Observers,
        max_result_bytes: int,
    ) -> None:
        self.completer, self.registry = completer, registry
        self.turns, self.skips, self.stopping = turns, skips, stopping
        self.observers, self.max_result_bytes = observers, max_result_bytes

    def drain(self, held: Held, first: Job | None = None) -> None:
        """Run the queue's due jobs, starting with `first` if its head was claimed
        with the lease (its attempt has started: it runs even if the worker stops)."""
        started, ran, exhausted = time.monotonic(), 0, False
        try:
            job = first if first is not None else self.completer.first(held)
            exhausted = job is None
            while job is not None:
                try:
                    outcome = self._perform(held, job)
                    ran += 1
                    go_on = outcome.ok and not self._must_stop(held, ran, started)
                except BaseException:
                    self.completer.abandon(job)
                    raise
                job = self.completer.complete(held, job, outcome, claim_next=go_on)
                exhausted = go_on and job is None
        finally:
            self._give_back(held, exhausted=exhausted)

    def _must_stop(self, held: Held, ran: int, started: float) -> bool:
        elapsed = time.monotonic() - started
        return held.lost or self.stopping.is_set() or self.turns.over(ran, elapsed)

    def _perform(self, held: Held, job: Job) -> Outcome:
        self.observers.job_started(job)
        started = held.attempt_started = time.monotonic()

        def on_start(execution: Execution) -> None:
            with held.lock:
                held.execution, held.job = execution, job
                held.started_at = now = time.monotonic()
                lost = held.lost
            if lost:
                execution.interrupt(Interrupt.LEASE_LOST)
            elif now > held.trusted_until:
                # Paused (SIGSTOP, a long GC) or partitioned between the claim and
                # now: the lease may be another worker's already, so the job must not
                # start (docs/guarantees.md). The trust watcher would say so too, but
                # it may wake after the action has begun.
                held.lose()

        action = self.registry.get(job.action)
        outcome = execute(job, action, on_start, self.max_result_bytes)
        with held.lock:
            held.execution = held.job = None
        self.observers.job_ended(job, outcome, time.monotonic() - started)
        return outcome

    def _give_back(self, held: Held, *, exhausted: bool) -> None:
        stopping = self.stopping.is_set()
        refreshed = self.completer.release(held, wake_others=stopping and not exhausted)
        if exhausted and not refreshed:
            # A producer holds the queue row, so its ready_at hint stays early: look
            # again after its notification or the next poll rather than spin on it.
            self.skips.add(held.lease.queue)
