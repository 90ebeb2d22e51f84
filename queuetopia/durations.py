"""Durations as people read them ('45s', '4m59s', '2h5m'), for the CLI and the
dashboard alike."""

from __future__ import annotations

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
