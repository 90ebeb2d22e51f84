"""A backend's OPTIONS: the defaults of the jobs it enqueues (docs/django.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from queuetopia import JobRequest, Queuetopia, ValidationError

from ..task_actions import SYNC_ACTION

JOB_OPTIONS = ("max_attempts", "max_backoff", "timeout")


def job_options(alias: str, options: object, topia: Queuetopia) -> dict[str, Any]:
    """OPTIONS as `create_job`'s keyword arguments, checked as queuetopia checks a
    job's options; ImproperlyConfigured naming what is wrong."""
    where = f"TASKS[{alias!r}]['OPTIONS']"
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict, got {type(options).__name__}")
    unknown = sorted(str(key) for key in options if key not in JOB_OPTIONS)
    if unknown:
        raise ImproperlyConfigured(
            f"{where} has unknown options: {', '.join(unknown)} (known: {', '.join(JOB_OPTIONS)})"
        )
    chosen = {key: options[key] for key in JOB_OPTIONS if key in options}
    sample = JobRequest("queue", SYNC_ACTION, {"task": "t", "args": [], "kwargs": {}}, **chosen)
    try:
        topia.validate([sample])
    except ValidationError as exc:
        raise ImproperlyConfigured(f"{where}: {exc}") from None
    return chosen
