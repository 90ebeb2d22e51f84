"""Results (docs/results.md): `job.wait()`, `await job.wait_async()` and
`topia.wait(job_id)` return the result of a done job, raise naming the state of a
failed or cancelled one, and TimeoutError while it has not ended."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from queuetopia import (
    Job,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobUnsuccessful,
    Queuetopia,
    QueuetopiaError,
)


def test_wait_returns_the_result_once_a_worker_ran_the_job(topia: Queuetopia) -> None:
    @topia.action("add")
    def add(a: int, b: int) -> int:
        time.sleep(0.05)
        return a + b

    job = add.delay("math", a=2, b=3)
    with topia.worker():
        assert job.wait(timeout=10) == 5
        assert topia.wait(job.id, timeout=1) == 5


def test_wait_raises_naming_the_state_and_the_error_of_a_failed_job(topia: Queuetopia) -> None:
    @topia.action("boom", max_attempts=1)
    def boom() -> None:
        raise RuntimeError("the printer is on fire\nsecond line")

    job = boom.delay("q")
    with topia.worker(), pytest.raises(JobFailed) as raised:
        job.wait(timeout=10)
    assert str(raised.value) == f"job {job.id} is failed: RuntimeError: the printer is on fire"
    assert raised.value.state == "failed" and isinstance(raised.value, JobUnsuccessful)
    assert isinstance(raised.value, QueuetopiaError)


def test_wait_on_a_cancelled_job_raises_job_cancelled(topia: Queuetopia) -> None:
    job = topia.create_job("q", "nobody-runs-this", scheduled_at=timedelta(hours=1))
    topia.cancel_job(job.id, "changed my mind")
    with pytest.raises(JobCancelled, match=rf"job {job.id} is cancelled: cancelled: changed my"):
        topia.wait(job.id, timeout=1)


def test_wait_times_out_on_a_job_that_has_not_ended(topia: Queuetopia) -> None:
    job = topia.create_job("q", "nobody-runs-this")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"job {job.id} is still pending after 0.3s"):
        job.wait(timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 3


def test_wait_on_an_unknown_job_and_on_a_job_built_by_hand(topia: Queuetopia) -> None:
    with pytest.raises(JobNotFound):
        topia.wait(987654321, timeout=1)
    job = topia.create_job("q", "x")
    copy = Job.model_validate(job.model_dump())
    with pytest.raises(QueuetopiaError, match=rf"use topia.wait\({job.id}\)"):
        copy.wait()


def test_wait_async(topia: Queuetopia) -> None:
    @topia.action("echo")
    async def echo(value: Any) -> Any:
        return value

    async def run() -> Any:
        try:
            job = await echo.delay_async("q", value={"k": [1, 2]})
            return await job.wait_async(timeout=10)
        finally:
            await topia.close_async_pool()

    with topia.worker():
        assert asyncio.run(run()) == {"k": [1, 2]}


def test_jobs_from_listings_can_be_waited_on(topia: Queuetopia) -> None:
    @topia.action("one")
    def one() -> int:
        return 1

    one.delay("q")
    [listed] = topia.list_jobs()
    with topia.worker():
        fetched = topia.get_job(listed.id)
        assert fetched is not None and fetched.wait(timeout=10) == 1
