"""Queuetopia(enqueue_connection=...): without connection=, sync enqueues run on the
connection the callable returns (a framework's transaction, as queuetopia.contrib.django
does), or on the topia's pool when it returns None."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from queuetopia import Job, Queuetopia

Conn = psycopg.Connection[Any]


@pytest.fixture
def outer(dsn: str) -> Iterator[Conn]:
    """A connection like a framework's: not autocommit, its transaction not begun yet."""
    with psycopg.connect(dsn) as conn:
        yield conn


def topia_on(make_topia: Callable[..., Queuetopia], current: list[Conn | None]) -> Queuetopia:
    topia = make_topia(enqueue_connection=lambda: current[0])
    topia.action("note")(lambda text: None)
    return topia


def test_enqueues_join_the_connection_it_returns_and_roll_back_with_it(
    make_topia: Callable[..., Queuetopia], outer: Conn
) -> None:
    topia = topia_on(make_topia, [outer])
    job = topia.actions["note"].delay("q", text="rolled back")  # the transaction's first statement
    also = topia.create_job("q", "note", {"text": "rolled back too"})
    assert topia.get_job(job.id) is None  # the pool does not see it: not committed
    outer.rollback()
    assert topia.list_jobs() == []
    assert also.id > job.id


def test_enqueues_on_its_connection_commit_with_it(
    make_topia: Callable[..., Queuetopia], outer: Conn
) -> None:
    topia = topia_on(make_topia, [outer])
    jobs = topia.actions["note"].delay_many("q", [{"text": "a"}, {"text": "b"}])
    outer.commit()
    assert sorted((j.id, j.params["text"]) for j in topia.list_jobs()) == [
        (jobs[0].id, "a"),
        (jobs[1].id, "b"),
    ]


def test_none_means_the_pool_and_an_explicit_connection_wins(
    make_topia: Callable[..., Queuetopia], outer: Conn
) -> None:
    current: list[Conn | None] = [None]
    topia = topia_on(make_topia, current)
    pooled = topia.actions["note"].delay("q", text="committed at once")
    assert topia.get_job(pooled.id) is not None
    current[0] = outer
    with psycopg.connect(topia.dsn, autocommit=True) as mine:
        given = topia.actions["note"].options(connection=mine).delay("q", text="mine")
    assert topia.get_job(given.id) is not None  # on `mine`, not in outer's transaction
    outer.rollback()
    assert sorted(j.id for j in topia.list_jobs()) == [pooled.id, given.id]


def test_async_enqueues_do_not_use_it(make_topia: Callable[..., Queuetopia], outer: Conn) -> None:
    """It returns a sync connection; async enqueues take their own pool's."""
    topia = topia_on(make_topia, [outer])

    async def enqueue() -> Job:
        async with topia:
            return await topia.actions["note"].delay_async("q", text="async")

    job = asyncio.run(enqueue())
    outer.rollback()
    assert topia.get_job(job.id) is not None


def test_a_connection_of_the_other_kind_is_refused_and_nothing_is_written(
    make_topia: Callable[..., Queuetopia], dsn: str, outer: Conn
) -> None:
    from queuetopia import JobRequest, ValidationError

    topia = topia_on(make_topia, [None])
    note = topia.actions["note"]

    async def async_side() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as aconn:
            with pytest.raises(ValidationError, match="async enqueue calls"):
                note.options(connection=aconn).delay("q", text="x")
        with pytest.raises(ValidationError, match="sync enqueue calls"):
            await note.options(connection=outer).delay_async("q", text="x")
        with pytest.raises(ValidationError, match="sync enqueue calls"):
            await topia.enqueue_many_async(
                [JobRequest("q", "note", {"text": "x"})], connection=outer
            )

    asyncio.run(async_side())
    assert topia.list_jobs() == []
