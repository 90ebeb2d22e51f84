"""Periodic jobs: `@topia.periodic(cron, queue=...)` enqueues a job at every tick of a
cron schedule (in UTC, on the database's clock), exactly once across all workers.

This module is the schedule itself; workers enqueue its ticks (scheduling.py). Ticks
missed while no worker ran are caught up, at most MAX_CATCH_UP of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from .errors import ValidationError

MAX_CATCH_UP = 100


@dataclass(frozen=True)
class Periodic:
    """The schedule of one action (its name keys the schedule's row)."""

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


def seconds_to_next_tick(periodics: list[Periodic], now: datetime) -> float | None:
    if not periodics:
        return None
    soonest = min(p.next_tick(now) for p in periodics)
    return max((soonest - now).total_seconds(), 0.0)
