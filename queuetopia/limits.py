"""Rate limits as people write them (docs/flow-control.md): which queues ('webhooks:*'
each on its own budget, or shared), how many starts per period ('10/s', '100/min',
'5/2h'), and the burst. Checked here; enforced by the database in every worker's step."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

from .errors import ValidationError
from .models import PERIODS
from .operations import like
from .validation import MAX_NAME_LENGTH, check_name, check_text

_RATE = re.compile(r"^\s*(\d{1,10})\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
_UNITS = {
    "s": "s", "sec": "s", "second": "s",
    "m": "min", "min": "min", "minute": "min",
    "h": "h", "hour": "h",
    "d": "d", "day": "d",
}  # fmt: skip
LONGEST_PERIOD = 365 * 86400.0
MOST_PER_PERIOD = 1_000_000_000


def parse_rate(rate: str | tuple[int, float | timedelta]) -> tuple[int, float]:
    """(count, period in seconds) from '10/s', '100/min', '5/2h', or (count, period)."""
    if isinstance(rate, tuple) and len(rate) == 2:
        count, period = rate
        seconds = period.total_seconds() if isinstance(period, timedelta) else period
        return _checked(count, seconds, rate)
    if not isinstance(rate, str):
        raise ValidationError(f"a rate is text like '10/s' or (count, period), got {rate!r}")
    match = _RATE.match(rate.lower())
    unit = _UNITS.get(match[3].rstrip("s") or "s") if match else None
    if match is None or unit is None:
        raise ValidationError(
            f"a rate is COUNT/PERIOD, like '10/s', '100/min', '5/2h' or '1000/d', got {rate!r}"
        )
    return _checked(int(match[1]), float(match[2] or 1) * PERIODS[unit], rate)


def _checked(count: Any, period: Any, given: object) -> tuple[int, float]:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MOST_PER_PERIOD:
        raise ValidationError(f"a rate allows 1 to {MOST_PER_PERIOD:,} starts, got {given!r}")
    ok = isinstance(period, int | float) and not isinstance(period, bool)
    if not ok or not math.isfinite(period) or not 0 < period <= LONGEST_PERIOD:
        raise ValidationError(f"a rate's period is more than 0 s and at most a year, got {given!r}")
    return count, float(period)


def limit_params(
    name: str, queues: str, rate: str | tuple[int, float | timedelta], burst: int, shared: bool
) -> dict[str, Any]:
    """The parameters of LIMIT_SET, checked; ValidationError names what is wrong."""
    check_name("limit", name)
    check_text("queues", queues)
    if not 1 <= len(queues) <= MAX_NAME_LENGTH:
        raise ValidationError(f"queues is a name or glob of 1 to {MAX_NAME_LENGTH} characters")
    count, period = parse_rate(rate)
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MOST_PER_PERIOD:
        raise ValidationError(f"burst must be a whole number from 1, got {burst!r}")
    if not isinstance(shared, bool):
        raise ValidationError(f"shared must be True or False, got {shared!r}")
    return {
        "name": name,
        "queues": queues,
        "pattern": like(queues),
        "shared": shared,
        "count": count,
        "period": period,
        "burst": burst,
    }
