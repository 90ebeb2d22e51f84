"""Queuetopia: persistent, strictly ordered, blocking job queues on PostgreSQL."""

from .actions import Action, BoundAction
from .app import Queuetopia
from .errors import (
    ConfigurationError,
    ConnectionRejected,
    DatabaseConflict,
    DatabaseError,
    DatabaseReadOnly,
    DatabaseUnavailable,
    InvalidTransition,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobTimeout,
    JobUnsuccessful,
    QueuetopiaError,
    StatementCancelled,
    ValidationError,
)
from .models import (
    Attempt,
    Job,
    JobRequest,
    JobState,
    OperatorAction,
    QueueInfo,
    QueueStatus,
    RateLimit,
)
from .operations import Selection
from .snooze import Snooze
from .worker import Worker

__all__ = [
    "Action",
    "Attempt",
    "BoundAction",
    "ConfigurationError",
    "ConnectionRejected",
    "DatabaseConflict",
    "DatabaseError",
    "DatabaseReadOnly",
    "DatabaseUnavailable",
    "InvalidTransition",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "JobRequest",
    "JobState",
    "JobTimeout",
    "JobUnsuccessful",
    "OperatorAction",
    "QueueInfo",
    "QueueStatus",
    "Queuetopia",
    "QueuetopiaError",
    "RateLimit",
    "Selection",
    "Snooze",
    "StatementCancelled",
    "ValidationError",
    "Worker",
]
