"""Queuetopia: persistent, strictly ordered, blocking job queues on PostgreSQL."""

from .actions import Action, BoundAction
from .app import Queuetopia
from .errors import (
    ConfigurationError,
    DatabaseConflict,
    DatabaseError,
    DatabaseUnavailable,
    InvalidTransition,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    QueuetopiaError,
    ValidationError,
)
from .models import Job, JobState, QueueInfo, QueueStatus
from .worker import Worker

__all__ = [
    "Action",
    "BoundAction",
    "ConfigurationError",
    "DatabaseConflict",
    "DatabaseError",
    "DatabaseUnavailable",
    "InvalidTransition",
    "Job",
    "JobNotFound",
    "JobState",
    "JobTimeout",
    "LeaseLost",
    "QueueInfo",
    "QueueStatus",
    "Queuetopia",
    "QueuetopiaError",
    "ValidationError",
    "Worker",
]
