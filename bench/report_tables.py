"""What the report's tables share: number formatting, a section with its table, and a
case's verdict (wrong, its targets met or missed, or why it could not run)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Result = dict[str, Any]  # one case's entry in the run's document (bench/run.py)


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def verdict(result: Result, timing: bool) -> str:
    """**WRONG** on a correctness failure; else the targets met and missed (timed
    modes), then why the workload did not run or finish, if it did not."""
    if not result["ok"]:
        return "**WRONG**"
    median = result["median"]
    if "skipped" in median:
        return f"skipped: {median['skipped']}"
    marks = []
    for name, ok in result["targets"].items() if timing else ():
        if ok is not None:
            marks.append(("meets " if ok else "misses ") + name)
    if median.get("failure"):  # in full in the JSON
        failure = str(median["failure"])
        marks.append(f"failed: {failure[:300]}" + (" ..." if len(failure) > 300 else ""))
    return "; ".join(marks) if marks else "ok"


def section(
    title: str, chosen: list[Result], header: list[str], row: Callable[[Result], list[Any]]
) -> list[str]:
    """A `## title` and its table, or nothing when no case of it ran."""
    if not chosen:
        return []
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in chosen:
        lines.append("| " + " | ".join(fmt(v) for v in row(r)) + " |")
    return [*lines, ""]
