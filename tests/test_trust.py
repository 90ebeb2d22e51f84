"""A worker that was paused or partitioned between claiming a job and starting it
must not start it once its lease is past the local trust deadline: the lease may be
another worker's by then (docs/guarantees.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from queuetopia import Queuetopia, store
from queuetopia.runner import Held, RunContext, Runner

from .test_processes import take_lease


def runner_on(topia: Queuetopia, conn: psycopg.Connection[Any]) -> Runner:
    def bookkeeping(fn: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        return fn(conn)

    never: Callable[[int, float], bool] = lambda _ran, _elapsed: False  # noqa: E731
    return Runner(RunContext(topia, "paused-node", bookkeeping, threading.Event(), never, print))


def test_a_claimed_job_does_not_start_past_the_trust_deadline(topia: Queuetopia, dsn: str) -> None:
    ran: list[int] = []

    @topia.action("record")
    def record() -> None:
        ran.append(1)

    job = topia.create_job("q", "record")
    with psycopg.connect(dsn, autocommit=True) as conn:
        lease = take_lease(conn, topia.scope, "paused-owner")
        assert lease is not None
        claimed = store.job_claim_head(conn, scope=topia.scope, lease=lease, node="paused")
        assert claimed.claimed and claimed.head is not None
        # Given a claim whose trust window ran out before the job could start (the
        # process was stopped right after claiming),
        held = Held(lease, trusted_until=time.monotonic() - 1.0)
        # when its runner gets to the job,
        runner_on(topia, conn).drain(held, claimed.head)
    # then the action never runs and the lease is no longer trusted.
    assert ran == []
    assert held.lost
    after = topia.get_job(job.id)
    assert after is not None and after.state != "done"


def test_a_trusted_claim_runs_its_job(topia: Queuetopia, dsn: str) -> None:
    ran: list[int] = []

    @topia.action("record")
    def record() -> None:
        ran.append(1)

    job = topia.create_job("q", "record")
    with psycopg.connect(dsn, autocommit=True) as conn:
        lease = take_lease(conn, topia.scope, "owner")
        assert lease is not None
        claimed = store.job_claim_head(conn, scope=topia.scope, lease=lease, node="node")
        assert claimed.head is not None
        held = Held(lease, trusted_until=time.monotonic() + 30.0)
        runner_on(topia, conn).drain(held, claimed.head)
    assert ran == [1]
    after = topia.get_job(job.id)
    assert after is not None and after.state == "done"
