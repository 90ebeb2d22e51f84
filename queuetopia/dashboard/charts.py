"""Bar charts drawn on the server as SVG: no chart library, no script."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..durations import span
from ..models import MinuteCounts

WIDTH, HEIGHT = 600, 120  # the viewBox; the SVG scales to its box


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    top_label: str
    empty: bool
    legend: list[tuple[str, str]]  # (css class, label)
    width: int = WIDTH
    height: int = HEIGHT


def _layout(count: int) -> tuple[float, float]:
    step = WIDTH / max(count, 1)
    return step, max(step * 0.8, 1.0)


def throughput_chart(counts: Sequence[MinuteCounts], title: str) -> Chart:
    """Done (below) and failed (stacked on top) jobs per minute."""
    top = max((c.done + c.failed for c in counts), default=0)
    step, width = _layout(len(counts))
    bars = []
    for i, c in enumerate(counts):
        label = f"{c.minute:%H:%M}: {c.done} done, {c.failed} failed"
        done_h = HEIGHT * c.done / top if top else 0.0
        failed_h = HEIGHT * c.failed / top if top else 0.0
        if c.done:
            bars.append(Bar(i * step, HEIGHT - done_h, width, done_h, "bar-done", label))
        if c.failed:
            bars.append(
                Bar(i * step, HEIGHT - done_h - failed_h, width, failed_h, "bar-failed", label)
            )
    return Chart(
        title,
        bars,
        f"{top}/min",
        top == 0,
        [("bar-done", "done"), ("bar-failed", "failed")],
    )


def age_chart(points: Sequence[tuple[datetime, float]], title: str) -> Chart:
    """The age of the oldest blocked head, per minute."""
    return _single(points, title, "bar-blocked", "oldest blocked head", span)


def _single(
    points: Sequence[tuple[datetime, float]],
    title: str,
    css: str,
    label: str,
    show: Callable[[float], str],
) -> Chart:
    top = max((v for _, v in points), default=0.0)
    step, width = _layout(len(points))
    bars = [
        Bar(
            i * step,
            HEIGHT - HEIGHT * v / top,
            width,
            HEIGHT * v / top,
            css,
            f"{m:%H:%M}: {show(v)}",
        )
        for i, (m, v) in enumerate(points)
        if v > 0 and top > 0
    ]
    return Chart(title, bars, show(top), top == 0, [(css, label)])
