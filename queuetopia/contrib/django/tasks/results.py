"""A job as Django's `TaskResult`: status, times, args and kwargs, attempts, errors
and return value, all read from the job (docs/django.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from django.utils.module_loading import import_string

from queuetopia import Job, JobState

from .errors import task_errors
from .framework import DEFAULT_TASK_BACKEND_ALIAS, Task, TaskResult, TaskResultStatus

P = ParamSpec("P")
R = TypeVar("R")

# A job waiting for its turn, its time or its retry is READY, as Django has no word
# for "blocked"; a cancelled job is FAILED, its reason its last error.
STATUS = {
    JobState.PENDING: TaskResultStatus.READY,
    JobState.RUNNING: TaskResultStatus.RUNNING,
    JobState.DONE: TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: TaskResultStatus.FAILED,
    JobState.CANCELLED: TaskResultStatus.FAILED,
}


def result_of(job: Job, task: Task[P, R]) -> TaskResult[P, R]:
    """The TaskResult of a job of the task actions, whose task is `task`: the one
    enqueued, or `task_of(job)`."""
    params = job.params
    result: TaskResult[P, R] = TaskResult(
        task=task,
        id=str(job.id),
        status=STATUS[job.state],
        enqueued_at=job.inserted_at,
        started_at=_first_start(job),
        finished_at=job.done_at,
        last_attempted_at=job.attempted_at,
        args=params["args"],
        kwargs=params["kwargs"],
        backend=params.get("backend", DEFAULT_TASK_BACKEND_ALIAS),
        errors=task_errors(job),
        worker_ids=worker_ids(job),
    )
    if job.state == JobState.DONE:
        object.__setattr__(result, "_return_value", job.result)  # a frozen dataclass
    return result


def load_task(path: str) -> Task[..., Any]:
    """The task at import path `path`; ImportError if there is none. Only a task is
    ever returned: a job naming any other function must not run it."""
    try:
        found = import_string(path)
    except ImportError as exc:
        raise ImportError(f"task {path!r} cannot be imported: {exc}") from exc
    if not isinstance(found, Task):
        raise ImportError(f"{path!r} is not a task (a function decorated with @task)")
    return found


def task_of(job: Job) -> Task[..., Any]:
    """The job's task as it was enqueued: its queue, backend and run_after."""
    params = job.params
    run_after = params.get("run_after")
    return load_task(params["task"]).using(
        queue_name=job.queue,
        backend=params.get("backend", DEFAULT_TASK_BACKEND_ALIAS),
        run_after=None if run_after is None else datetime.fromisoformat(run_after),
    )


def worker_ids(job: Job) -> list[str]:
    """The node of each attempt started (so Django's `attempts` is the job's); ''
    for an attempt older than the history keeps."""
    nodes = {a.attempt: a.node for a in job.attempt_log}
    if job.attempted_by:
        nodes.setdefault(job.attempts, job.attempted_by)
    return [nodes.get(n) or "" for n in range(1, job.attempts + 1)]


def _first_start(job: Job) -> datetime | None:
    starts = [a.started_at for a in job.attempt_log if a.started_at is not None]
    return min(starts, default=job.attempted_at)
