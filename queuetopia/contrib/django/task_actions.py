"""The two actions that run Django tasks (docs/django.md), and which task a job of
theirs runs. Free of django.tasks, so the admin can use it on any Django."""

from __future__ import annotations

from typing import Any

SYNC_ACTION = "django.tasks"
ASYNC_ACTION = "django.tasks.async"  # `async def` tasks: run on the worker's event loop
ACTIONS = frozenset({SYNC_ACTION, ASYNC_ACTION})


def shown_action(action: str, params: dict[str, Any]) -> str:
    """What people see as a job's action: the task's import path for a Django task
    (its action is one of the two generic ones), else the action's name."""
    task = params.get("task") if action in ACTIONS else None
    return task if isinstance(task, str) else action
