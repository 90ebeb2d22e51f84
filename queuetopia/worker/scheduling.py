"""Enqueues the due ticks of periodic jobs (periodic.py), exactly once across all
workers: a worker locks the schedule's row (`SKIP LOCKED`, so one worker does the
work), enqueues one job per tick since the last one recorded, and records the newest
tick, all in one transaction."""

from __future__ import annotations

from ..db import steps
from ..db.rows import Conn, transaction
from ..enqueue import Producer
from ..models import JobRequest
from ..periodic import Periodic


def enqueue_due(conn: Conn, producer: Producer, periodic: Periodic) -> int:
    """Enqueue the due ticks of `periodic`; return how many jobs were enqueued."""
    scope, name = producer.scope, periodic.action
    with transaction(conn):
        tick = periodic.previous_tick(steps.db_now(conn))
        steps.periodic_register(conn, scope=scope, name=name, tick=tick)
        locked = steps.periodic_lock(conn, scope=scope, name=name)
        if locked is None:
            return 0
        ticks = periodic.ticks_after(*locked)
        requests = [
            JobRequest(periodic.queue, periodic.action, periodic.params, scheduled_at=tick)
            for tick in ticks
        ]
        producer.enqueue(requests, conn, label=False)
        if ticks:
            steps.periodic_advance(conn, scope=scope, name=name, tick=ticks[-1])
        return len(ticks)
