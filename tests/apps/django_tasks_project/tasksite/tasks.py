"""The tasks of the tests: what Django's contract asks of a backend."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

try:
    from django.tasks import TaskContext, task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import TaskContext, task  # type: ignore[no-redef]


class Refused(Exception):
    """A task's own exception: errors name it by its import path."""


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task
def refuse(reason: str) -> None:
    raise Refused(reason)


@task
def divide(a: int, b: int) -> float:
    return a / b


@task(takes_context=True)
def flaky(context: TaskContext, succeed_on: int) -> dict[str, Any]:
    """Fails until its attempt `succeed_on`; then says what its context said."""
    if context.attempt < succeed_on:
        raise ValueError(f"attempt {context.attempt} failed")
    result = context.task_result
    return {
        "attempt": context.attempt,
        "id": result.id,
        "status": str(result.status),
        "errors": [e.traceback.splitlines()[-1] for e in result.errors],
    }


@task
async def async_add(a: int, b: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"sum": a + b, "thread": threading.current_thread().name}


@task
def thread_name() -> str:
    return threading.current_thread().name


@task
def not_json() -> Any:
    return object()


@task
def exits() -> None:
    sys.exit(3)


@task
def sleeps(seconds: float) -> None:
    for _ in range(int(seconds * 10)):  # short calls: a timeout lands between two
        time.sleep(0.1)
