"""How the dashboard writes times, ages and errors for people; no I/O."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from ..durations import span
from ..errors import redact


def when(moment: datetime | None, now: datetime) -> str:
    """'in 4s' or '2m ago'; empty for no time."""
    if moment is None:
        return ""
    seconds = (moment - now).total_seconds()
    return f"in {span(seconds)}" if seconds > 0 else f"{span(-seconds)} ago"


def age(moment: datetime | None, now: datetime) -> str:
    return "" if moment is None else span((now - moment).total_seconds())


def age_class(moment: datetime | None, now: datetime) -> str:
    """A colour for how long a queue has been blocked: a retry is normal for a few
    seconds, worth a look after a minute, an incident after fifteen (docs/monitoring.md)."""
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    return "age-fresh" if seconds < 60 else "age-warn" if seconds < 900 else "age-bad"


def stamp(moment: datetime | None) -> str:
    return "—" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


def first_line(text: str | None, width: int = 120) -> str:
    """The first line of an error, shortened, with any DSN password hidden."""
    if not text:
        return ""
    line = redact(text).strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def error_text(text: str | None) -> str:
    """A whole error (the traceback included), with any DSN password hidden."""
    return redact(text) if text else ""


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def renewed(locked_until: datetime, lock_ttl: float, now: datetime) -> str:
    """When a lease was last renewed: a renewal sets its expiry to now + lock_ttl (the
    topia's lock_ttl, which the workers of a scope share)."""
    return when(locked_until - timedelta(seconds=lock_ttl), now)
