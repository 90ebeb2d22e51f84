"""One behavioural suite for the sync and the async producer API."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from queuetopia import Action, BoundAction, Queuetopia, ValidationError


class SyncProducer:
    def __init__(self, topia: Queuetopia, action: Action[Any, Any]) -> None:
        self.topia, self.action = topia, action

    def delay(self, queue: str, **params: Any) -> Any:
        return self.action.delay(queue, **params)

    def schedule(self, queue: str, at: Any, **params: Any) -> Any:
        return self.action.schedule(queue, at=at, **params)

    def delay_many(self, queue: str, params: list[dict[str, Any]]) -> Any:
        return self.action.delay_many(queue, params)

    def create_job(self, queue: str, action: str, params: dict[str, Any]) -> Any:
        return self.topia.create_job(queue, action, params)

    def in_transaction(self, dsn: str, queue: str, commit: bool, **params: Any) -> Any:
        with psycopg.connect(dsn) as conn:
            job = self.action.options(connection=conn).delay(queue, **params)
            conn.commit() if commit else conn.rollback()
        return job


class AsyncProducer(SyncProducer):
    def delay(self, queue: str, **params: Any) -> Any:
        return asyncio.run(self._closing(self.action.delay_async(queue, **params)))

    def schedule(self, queue: str, at: Any, **params: Any) -> Any:
        return asyncio.run(self._closing(self.action.schedule_async(queue, at=at, **params)))

    def delay_many(self, queue: str, params: list[dict[str, Any]]) -> Any:
        return asyncio.run(self._closing(self.action.delay_many_async(queue, params)))

    def create_job(self, queue: str, action: str, params: dict[str, Any]) -> Any:
        return asyncio.run(self._closing(self.topia.create_job_async(queue, action, params)))

    def in_transaction(self, dsn: str, queue: str, commit: bool, **params: Any) -> Any:
        async def run() -> Any:
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                job = await self.action.options(connection=conn).delay_async(queue, **params)
                await (conn.commit() if commit else conn.rollback())
            return job

        return asyncio.run(run())

    async def _closing(self, call: Any) -> Any:
        # Each asyncio.run has its own loop, and so its own async pool: close it.
        try:
            return await call
        finally:
            await self.topia.aclose()


@pytest.fixture(params=["sync", "async"])
def producer(request: pytest.FixtureRequest, topia: Queuetopia) -> SyncProducer:
    @topia.action("send")
    def send(to: str, n: int = 0) -> None: ...

    kind = SyncProducer if request.param == "sync" else AsyncProducer
    return kind(topia, send)


def test_delay_stores_a_validated_job(producer: SyncProducer) -> None:
    job = producer.delay("q", to="a@x", n=3)
    assert (job.queue, job.action, job.params, job.state) == (
        "q",
        "send",
        {"to": "a@x", "n": 3},
        "pending",
    )
    assert producer.topia.get_job(job.id) == job


def test_bad_params_raise_and_write_nothing(producer: SyncProducer) -> None:
    with pytest.raises(ValidationError, match="to"):
        producer.delay("q", n=3)
    with pytest.raises(ValidationError, match="queue"):
        producer.delay("", to="a")
    assert producer.topia.list_jobs() == []


def test_schedule_and_delay_many_keep_order(producer: SyncProducer) -> None:
    later = producer.schedule("q", timedelta(hours=1), to="later")
    jobs = producer.delay_many("q", [{"to": str(i)} for i in range(5)])
    assert [j.params["to"] for j in jobs] == [str(i) for i in range(5)]
    assert [j.seq for j in jobs] == sorted(j.seq for j in jobs)
    assert later.scheduled_at - jobs[0].scheduled_at > timedelta(minutes=59)


def test_create_job_of_an_unregistered_action(producer: SyncProducer) -> None:
    job = producer.create_job("q", "elsewhere", {"x": [1, 2]})
    assert (job.action, job.params, job.max_attempts) == ("elsewhere", {"x": [1, 2]}, 20)


def test_enqueue_in_the_callers_transaction(producer: SyncProducer, dsn: str) -> None:
    kept = producer.in_transaction(dsn, "q", commit=True, to="kept")
    producer.in_transaction(dsn, "q", commit=False, to="dropped")
    assert [j.id for j in producer.topia.list_jobs()] == [kept.id]


SYNC_ASYNC: list[tuple[Callable[..., Any], Callable[..., Any]]] = [
    (Action.delay, Action.delay_async),
    (Action.schedule, Action.schedule_async),
    (Action.delay_many, Action.delay_many_async),
    (BoundAction.delay, BoundAction.delay_async),
    (BoundAction.schedule, BoundAction.schedule_async),
    (BoundAction.delay_many, BoundAction.delay_many_async),
    (Queuetopia.create_job, Queuetopia.create_job_async),
]


@pytest.mark.parametrize(("sync", "async_"), SYNC_ASYNC, ids=lambda f: f.__qualname__)
def test_async_signatures_match_the_sync_ones(sync: Any, async_: Any) -> None:
    assert inspect.iscoroutinefunction(async_)

    def shape(fn: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    assert shape(sync) == shape(async_)


def test_an_async_action_can_enqueue_with_delay_async(topia: Queuetopia) -> None:
    from queuetopia import JobState

    from .helpers import wait_for

    @topia.action("follow_up")
    def follow_up(n: int) -> None: ...

    @topia.action("chain")
    async def chain(n: int) -> None:
        if n < 3:  # each runner thread has its own event loop, and so its own pool
            await follow_up.delay_async("next", n=n)
            await chain_action.delay_async(f"chain-{n + 1}", n=n + 1)

    chain_action = chain
    chain.delay("chain-0", n=0)
    with topia.worker(concurrency=2):
        wait_for(lambda: len(topia.list_jobs(state=JobState.DONE)) == 7, timeout=20)
    assert {j.params["n"] for j in topia.list_jobs(queue="next")} == {0, 1, 2}
