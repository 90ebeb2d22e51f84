"""Durations as people read them ('45s', '4m59s', '2h5m'), for the CLI and the
dashboard alike, and duration options as seconds."""

from __future__ import annotations

from datetime import timedelta

from .errors import ValidationError

UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def span(seconds: float) -> str:
    """'45s', '4m59s', '2h5m', '3d4h': the largest unit and the next one; '<1s' for
    less than a second (but more than none)."""
    if 0 < seconds < 1:
        return "<1s"
    whole = int(max(seconds, 0))
    for i, (unit, size) in enumerate(UNITS[:-1]):
        if whole >= size:
            rest_unit, rest_size = UNITS[i + 1]
            rest = (whole % size) // rest_size
            return f"{whole // size}{unit}" + (f"{rest}{rest_unit}" if rest else "")
    return f"{whole}s"


def seconds(value: float | timedelta) -> float:
    """A duration option as seconds: a timedelta converted, a number as is. The one
    conversion every option, setting and operator call uses."""
    return value.total_seconds() if isinstance(value, timedelta) else value


def optional_seconds(value: float | timedelta | None) -> float | None:
    return None if value is None else seconds(value)


def positive_seconds(value: float | timedelta, what: str) -> float:
    """`seconds(value)`, which must be a positive number: ValidationError naming
    `what` otherwise."""
    converted = seconds(value)
    if isinstance(converted, bool) or not isinstance(converted, int | float) or not converted > 0:
        raise ValidationError(f"{what} must be a positive duration, got {value!r}")
    return float(converted)
