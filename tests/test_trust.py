"""A worker that was paused or partitioned between claiming a job and starting it
must not start it once its lease is past the local trust deadline: the lease may be
another worker's by then (docs/guarantees.md). The check is the very last step before
the action's first line (Hold.started), for plain and `async def` actions alike."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from queuetopia import Queuetopia
from queuetopia.models import Outcome
from queuetopia.worker.executor import execute, execute_async
from queuetopia.worker.holds import Hold

from .test_processes import take_lease


def claim_and_run(
    topia: Queuetopia, dsn: str, trusted_for: float, kind: str
) -> tuple[Outcome, Hold]:
    """Claim the head of queue "q" and run it under a hold trusted for `trusted_for`
    more seconds (negative: the trust window ran out before the job could start);
    return how the attempt ended and the hold as it left it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        claimed = take_lease(conn, topia.scope, "owner")
        lease = claimed.lease
        assert lease is not None and claimed.job is not None
    job, action = claimed.job, topia.actions[kind]
    hold = Hold(lease, trusted_until=time.monotonic() + trusted_for)
    if kind == "plain":
        return execute(job, action, lambda e: hold.started(e, job)), hold
    attempt = execute_async(job, action, lambda e: hold.started(e, job))
    return asyncio.run(_in_a_task(attempt)), hold


async def _in_a_task(attempt: object) -> Outcome:
    return await asyncio.create_task(attempt)  # type: ignore[arg-type]


@pytest.fixture
def ran(topia: Queuetopia) -> list[str]:
    ran: list[str] = []

    @topia.action("plain")
    def plain() -> None:
        ran.append("plain")

    @topia.action("coroutine")
    async def coroutine() -> None:
        ran.append("coroutine")

    return ran


@pytest.mark.parametrize("kind", ["plain", "coroutine"])
def test_a_claimed_job_does_not_start_past_the_trust_deadline(
    topia: Queuetopia, dsn: str, ran: list[str], kind: str
) -> None:
    # Given a claim whose trust window ran out before its job could start (the process
    # was stopped right after claiming), when the job gets to start,
    topia.create_job("q", kind)
    outcome, hold = claim_and_run(topia, dsn, -1.0, kind)
    # then the action never runs and the lease is no longer trusted.
    assert ran == []
    assert hold.lost
    assert (outcome.ok, outcome.interrupted) == (False, "lease lost")


@pytest.mark.parametrize("kind", ["plain", "coroutine"])
def test_a_trusted_claim_runs_its_job(
    topia: Queuetopia, dsn: str, ran: list[str], kind: str
) -> None:
    topia.create_job("q", kind)
    outcome, hold = claim_and_run(topia, dsn, 30.0, kind)
    assert ran == [kind]
    assert not hold.lost and outcome.ok
