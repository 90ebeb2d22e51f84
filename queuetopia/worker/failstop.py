"""Fail-stop: the process exits when an execution outlives the lease it runs under.

A worker that can no longer renew a lease stops trusting it at 80 % of lock_ttl after
the start of its last renewal, and interrupts the execution. An interrupt lands at the
next Python bytecode, so a sync action inside one long C call (a single long
`time.sleep`, a socket read without a timeout) does not stop. If the execution has not
ended a grace of 10 % of lock_ttl later, the worker exits the process at once: the
database keeps the lease for at least lock_ttl from that renewal's start, so the
execution ends before any other worker can take the queue (docs/guarantees.md). The
supervisor (systemd, Kubernetes) starts the worker again; the attempt counts as
"worker lost" (docs/deploying.md)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn

from ..models import Job

logger = logging.getLogger("queuetopia.worker")

# The exit status of a fail-stop (EX_TEMPFAIL: "try again later").
EXIT_LEASE_EXPIRED = 75
# How long an execution may take to end once its lease is lost, as a share of
# lock_ttl: the interrupt comes at 80 %, the exit by 90 %.
GRACE_SHARE = 0.1


def fail_stop(queue: str, job: Job | None) -> NoReturn:
    """Log why, then exit the process at once: no cleanup, no thread joins."""
    what = f"job {job.id} (action {job.action!r})" if job is not None else "a job"
    logger.critical(
        "%s of queue %r did not stop after the lease on its queue was lost: exiting the"
        " process (status %d) so that no other worker can run that queue while it runs;"
        " see docs/deploying.md",
        what,
        queue,
        EXIT_LEASE_EXPIRED,
    )
    for handler in _handlers():
        with contextlib.suppress(Exception):  # nothing may keep the process alive
            handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_LEASE_EXPIRED)


def _handlers() -> list[logging.Handler]:
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers.extend(current.handlers)
        current = current.parent if current.propagate else None
    return handlers
