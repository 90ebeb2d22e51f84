"""Periodic jobs: `@topia.periodic(cron, queue=...)` enqueues a job at every tick of a
cron schedule (in UTC, on the database's clock), exactly once across all workers.

Each worker checks the schedules it knows on its loop: it locks the schedule's row
(`SKIP LOCKED`, so one worker does the work), enqueues one job per tick since the last
one recorded, and records the newest tick, all in one transaction. Ticks missed while
no worker ran are caught up (at most MAX_CATCH_UP of them) when one starts again."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from croniter import croniter

from . import store
from .errors import ValidationError
from .models import JobRequest
from .store import Conn

if TYPE_CHECKING:
    from .app import Queuetopia

MAX_CATCH_UP = 100


@dataclass(frozen=True)
class Periodic:
    name: str
    cron: str
    queue: str
    action: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.cron):
            raise ValidationError(f"invalid cron expression {self.cron!r}")

    def previous_tick(self, now: datetime) -> datetime:
        tick: datetime = croniter(self.cron, now.astimezone(UTC)).get_prev(datetime)
        return tick

    def next_tick(self, now: datetime) -> datetime:
        tick: datetime = croniter(self.cron, now.astimezone(UTC)).get_next(datetime)
        return tick

    def ticks_after(self, last: datetime, now: datetime) -> list[datetime]:
        """Ticks in (last, now], oldest first, at most MAX_CATCH_UP (the newest ones)."""
        ticks: list[datetime] = []
        schedule = croniter(self.cron, last.astimezone(UTC))
        while (tick := schedule.get_next(datetime)) <= now:
            ticks.append(tick)
            if len(ticks) > MAX_CATCH_UP:
                ticks.pop(0)
        return ticks


def enqueue_due(conn: Conn, topia: Queuetopia, periodic: Periodic) -> int:
    """Enqueue the due ticks of `periodic`; return how many jobs were enqueued."""
    with conn.transaction():
        store.periodic_register(
            conn,
            scope=topia.scope,
            name=periodic.name,
            tick=periodic.previous_tick(store.db_now(conn)),
        )
        locked = store.periodic_lock(conn, scope=topia.scope, name=periodic.name)
        if locked is None:
            return 0
        last, now = locked
        ticks = periodic.ticks_after(last, now)
        requests = [
            JobRequest(periodic.queue, periodic.action, periodic.params, scheduled_at=tick)
            for tick in ticks
        ]
        topia.enqueue_requests(requests, conn, label=False)
        if ticks:
            store.periodic_advance(conn, scope=topia.scope, name=periodic.name, tick=ticks[-1])
        return len(ticks)


def seconds_to_next_tick(periodics: list[Periodic], now: datetime) -> float | None:
    if not periodics:
        return None
    soonest = min(p.next_tick(now) for p in periodics)
    return max((soonest - now).total_seconds(), 0.0)
