"""`Snooze`: an action's way to say "not yet, look again in a while" without using an
attempt (docs/flow-control.md). Raised or returned by the action; the worker keeps the
job at its queue's head and makes it due again after the snooze."""

from __future__ import annotations

import math
from datetime import timedelta

from .backoff import LONGEST_BACKOFF
from .durations import seconds as as_seconds


class Snooze(Exception):
    """Raise (or return) `Snooze(30)` or `Snooze(timedelta(minutes=1))` from an action:
    its job waits that long at its queue's head, its attempt not counted."""

    def __init__(self, seconds: float | timedelta) -> None:
        value = as_seconds(seconds)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"Snooze takes seconds or a timedelta, got {seconds!r}")
        if not math.isfinite(value) or not 0 <= value <= LONGEST_BACKOFF:
            raise ValueError(f"a snooze lasts 0 s to a century, got {seconds!r}")
        super().__init__(f"snoozed for {value:g}s")
        self.seconds = float(value)
