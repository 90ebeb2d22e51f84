"""`QueuetopiaBackend`: Django's task framework on queuetopia. A task's queue_name
is a queuetopia queue, so tasks run in order, one at a time per queue, and a failing
task holds back the tasks behind it (docs/django.md, "With Django's task framework")."""

from __future__ import annotations

import inspect
import re
from datetime import datetime
from functools import cached_property
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.core.checks import CheckMessage
from django.utils import timezone

from queuetopia import Job, JobRequest, Queuetopia, ValidationError
from queuetopia.validation import check_name

from ..conf import get_topia
from ..task_actions import ACTIONS, ASYNC_ACTION, SYNC_ACTION
from .checks import backend_checks
from .framework import (
    DEFAULT_TASK_PRIORITY,
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    normalize_json,
    task_enqueued,
)
from .options import job_options
from .results import result_of, task_of
from .runner import register

P = ParamSpec("P")
R = TypeVar("R")

NO_PRIORITY = (
    "queuetopia runs the tasks of a queue strictly in order, so it has no priority: "
    "leave priority at 0, and give urgent work a queue of its own (queue_name)"
)
_JOB_ID = re.compile(r"[0-9]{1,18}")  # a result id is its job's id


class QueuetopiaBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = False  # contradicts strict order within a queue

    def validate_task(self, task: Task[..., Any]) -> None:
        if task.priority != DEFAULT_TASK_PRIORITY:
            raise InvalidTask(NO_PRIORITY)
        super().validate_task(task)
        try:
            check_name("queue", task.queue_name)
        except ValidationError as exc:
            raise InvalidTask(str(exc)) from None

    @cached_property
    def topia(self) -> Queuetopia:
        """The topia of QUEUETOPIA["APP"], with the actions that run tasks."""
        topia = get_topia()
        register(topia)
        return topia

    @cached_property
    def job_options(self) -> dict[str, Any]:
        return job_options(self.alias, self.options, self.topia)

    def enqueue(
        self, task: Task[P, R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        """Inside `transaction.atomic()`, the job joins Django's transaction."""
        self.validate_task(task)
        [job] = self.topia.enqueue_many([self.request(task, args, kwargs)])
        return self.enqueued(job, task)

    async def aenqueue(
        self, task: Task[P, R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        """On the topia's async pool: it commits at once (Django's transactions are
        sync only)."""
        self.validate_task(task)
        [job] = await self.topia.enqueue_many_async([self.request(task, args, kwargs)])
        return self.enqueued(job, task)

    def request(self, task: Task[..., Any], args: list[Any], kwargs: dict[str, Any]) -> JobRequest:
        """The job of one call of `task`: a TypeError if its arguments are not JSON."""
        params = {
            "task": task.module_path,
            "args": normalize_json(list(args)),
            "kwargs": normalize_json(dict(kwargs)),
            "backend": self.alias,
        }
        if task.run_after is not None:  # kept, so the result's task is the one enqueued
            params["run_after"] = task.run_after.isoformat()
        action = ASYNC_ACTION if inspect.iscoroutinefunction(task.func) else SYNC_ACTION
        at = _aware(task.run_after)
        return JobRequest(task.queue_name, action, params, scheduled_at=at, **self.job_options)

    def enqueued(self, job: Job, task: Task[P, R]) -> TaskResult[P, R]:
        result = result_of(job, task)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        """The task's result as its job says now; TaskResultDoesNotExist for an id
        that is not a task's job of this topia (or whose job was pruned)."""
        job_id = str(result_id)
        job = self.topia.get_job(int(job_id)) if _JOB_ID.fullmatch(job_id) else None
        if job is None or job.action not in ACTIONS:
            raise TaskResultDoesNotExist(result_id)
        return result_of(job, task_of(job))

    async def aget_result(self, result_id: str) -> TaskResult[..., Any]:
        # Any thread will do: the topia's pool, not Django's connection, reads the job.
        return await sync_to_async(self.get_result, thread_sensitive=False)(result_id)

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        return [*super().check(**kwargs), *backend_checks(self)]


def _aware(run_after: datetime | None) -> datetime | None:
    """A naive run_after (USE_TZ = False) is in Django's default time zone."""
    if run_after is None or timezone.is_aware(run_after):
        return run_after
    return timezone.make_aware(run_after)
