"""A worker that was paused or partitioned between claiming a job and starting it
must not start it once its lease is past the local trust deadline: the lease may be
another worker's by then (docs/guarantees.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from queuetopia import Queuetopia
from queuetopia.completer import Completer
from queuetopia.db import store
from queuetopia.events import LogObserver, Observers
from queuetopia.fairness import Skips, Turns
from queuetopia.leases import Held
from queuetopia.runner import Runner

from .test_processes import take_lease


def runner_on(topia: Queuetopia, conn: psycopg.Connection[Any]) -> Runner:
    def bookkeeping(fn: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        return fn(conn)

    engine, stopping, observers = topia.engine, threading.Event(), Observers([LogObserver()])
    completer = Completer(
        topia.scope, "paused-node", engine.registry, bookkeeping, observers, stopping
    )
    return Runner(
        completer,
        engine.registry,
        turns=Turns(),
        skips=Skips(60.0),
        stopping=stopping,
        observers=observers,
        max_result_bytes=engine.settings.max_result_bytes,
    )


def claim_and_drain(topia: Queuetopia, dsn: str, trusted_for: float) -> tuple[list[int], Held]:
    """Claim the head of queue "q" and drain it with a lease trusted for `trusted_for`
    more seconds (negative: the trust window ran out before the job could start);
    return what the action ran and the lease as the runner left it."""
    ran: list[int] = []

    @topia.action("record")
    def record() -> None:
        ran.append(1)

    topia.create_job("q", "record")
    with psycopg.connect(dsn, autocommit=True) as conn:
        lease = take_lease(conn, topia.scope, "owner")
        assert lease is not None
        claimed = store.job_claim_head(conn, scope=topia.scope, lease=lease, node="node")
        assert claimed.claimed and claimed.head is not None
        held = Held(lease, trusted_until=time.monotonic() + trusted_for)
        runner_on(topia, conn).drain(held, claimed.head)
    return ran, held


def test_a_claimed_job_does_not_start_past_the_trust_deadline(topia: Queuetopia, dsn: str) -> None:
    # Given a claim whose trust window ran out before its job could start (the process
    # was stopped right after claiming), when its runner gets to the job,
    ran, held = claim_and_drain(topia, dsn, trusted_for=-1.0)
    # then the action never runs and the lease is no longer trusted.
    assert ran == []
    assert held.lost
    assert [job.state for job in topia.list_jobs()] != ["done"]


def test_a_trusted_claim_runs_its_job(topia: Queuetopia, dsn: str) -> None:
    ran, held = claim_and_drain(topia, dsn, trusted_for=30.0)
    assert ran == [1]
    assert not held.lost
    assert [job.state for job in topia.list_jobs()] == ["done"]
