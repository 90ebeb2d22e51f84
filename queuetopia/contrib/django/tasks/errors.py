"""A job's failed attempts as Django's `TaskError`s: one per failed attempt, from the
attempt history (docs/django.md, "With Django's task framework")."""

from __future__ import annotations

import re

from queuetopia import Job, JobState

from .framework import TaskError

_TRACEBACK = "Traceback (most recent call last):"
# The first line of an exception's summary: its class, module-qualified unless builtin.
_CLASS = re.compile(r"([A-Za-z_][\w.]*)(?::|$)")
# Errors the worker writes itself, with no exception behind them (docs/blocking.md):
# their class is the queuetopia exception that stands for them.
_TIMEOUT, _CANCELLED, _OTHER = (
    "queuetopia.JobTimeout",
    "queuetopia.JobCancelled",
    ("queuetopia.QueuetopiaError"),
)


def task_errors(job: Job) -> list[TaskError]:
    """One TaskError per failed attempt of the last 20 (the history's length), then
    one for the cancellation of a cancelled job."""
    failed = [a.error for a in job.attempt_log if a.outcome != "done" and a.error]
    if failed and job.error and job.error.startswith(failed[-1]):
        failed[-1] = job.error  # the history keeps 2,000 characters; the job the whole
    errors = [task_error(text) for text in failed]
    if job.state == JobState.CANCELLED and job.error:
        errors.append(TaskError(exception_class_path=_CANCELLED, traceback=job.error))
    return errors


def task_error(text: str) -> TaskError:
    """An attempt's stored error as a TaskError. The worker stores a raised exception
    as its summary line, a blank line, then its traceback; anything else is an error
    of the worker's own ("timeout: ...", "worker lost: ...")."""
    if _TRACEBACK not in text:
        own = _TIMEOUT if text.startswith("timeout:") else _OTHER
        return TaskError(exception_class_path=own, traceback=text)
    found = _CLASS.match(text)
    if found is None:
        return TaskError(exception_class_path=_OTHER, traceback=text)
    name = found.group(1)
    path = name if "." in name else f"builtins.{name}"
    start = text.find(f"\n\n{_TRACEBACK}")
    trace = text[start + 2 :] if start >= 0 else text.partition("\n\n")[2] or text
    return TaskError(exception_class_path=path, traceback=trace + "\n")
