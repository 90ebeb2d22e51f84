"""What a worker runs for a Django task: the two actions registered on the topia
(`django.tasks`, and `django.tasks.async` for `async def` tasks) that find the task
by its import path when the job runs and call it (docs/django.md)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections
from django.utils import timezone

from queuetopia import Job, Queuetopia

from ..task_actions import ASYNC_ACTION, SYNC_ACTION
from .framework import (
    DEFAULT_TASK_BACKEND_ALIAS,
    TaskContext,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_finished,
    task_started,
)
from .results import result_of, task_of

_registering = threading.Lock()


def register(topia: Queuetopia) -> None:
    """Register the two task actions on `topia`, once."""
    with _registering:
        if SYNC_ACTION not in topia.actions:
            topia.action(SYNC_ACTION)(run_task)
        if ASYNC_ACTION not in topia.actions:
            topia.action(ASYNC_ACTION)(run_task_async)


def run_task(
    task: str,
    # A list and a dict, typed Any so that queuetopia checks them as JSON when they
    # are enqueued: pydantic would store a NaN in a typed list as null.
    args: Any,
    kwargs: Any,
    job: Job,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    run_after: str | None = None,
) -> Any:
    """Run the task at `task` with `args` and `kwargs`; its return value, as JSON."""
    result = result_of(job, task_of(job))
    # A worker thread has no requests to recycle its connection (docs/django.md).
    close_old_connections()
    try:
        return _attempt(result, lambda: result.task.call(*_context(result), *args, **kwargs))
    finally:
        close_old_connections()


async def run_task_async(
    task: str,
    args: Any,
    kwargs: Any,
    job: Job,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    run_after: str | None = None,
) -> Any:
    """`run_task` for `async def` tasks, awaited on the worker's event loop."""
    result = result_of(job, task_of(job))
    _started(result)
    try:
        # Django's rule: a task returns JSON, else it fails.
        value = normalize_json(await result.task.acall(*_context(result), *args, **kwargs))
    except BaseException as exc:
        _failed(result, exc)
        raise
    return _succeeded(result, value)


def _attempt(result: TaskResult[..., Any], call: Callable[[], Any]) -> Any:
    _started(result)
    try:
        value = normalize_json(call())
    except BaseException as exc:
        _failed(result, exc)
        raise
    return _succeeded(result, value)


def _context(result: TaskResult[..., Any]) -> tuple[Any, ...]:
    """The leading argument of a task that takes its context."""
    return (TaskContext(task_result=result),) if result.task.takes_context else ()


def _started(result: TaskResult[..., Any]) -> None:
    task_started.send(sender=_backend_class(result), task_result=result)


def _succeeded(result: TaskResult[..., Any], value: Any) -> Any:
    object.__setattr__(result, "_return_value", value)
    _finish(result, TaskResultStatus.SUCCESSFUL)
    return value


def _failed(result: TaskResult[..., Any], exc: BaseException) -> None:
    """Sent from inside the `except` block: Django's receiver logs the traceback from
    sys.exc_info(). A failure the worker retries is reported FAILED here, for this
    attempt, and READY by get_result until its next attempt."""
    if isinstance(exc, Exception | SystemExit):  # not the worker's own interrupts
        _finish(result, TaskResultStatus.FAILED)


def _finish(result: TaskResult[..., Any], status: TaskResultStatus) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())
    task_finished.send(sender=_backend_class(result), task_result=result)


def _backend_class(result: TaskResult[..., Any]) -> type:
    """The sender of the signals, as Django's backends send them: the task's backend's
    class."""
    return type(result.task.get_backend())
