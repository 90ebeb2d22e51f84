"""`commit_timeout` bounds every wait for a reply on the topia's pools
(docs/deploying.md, "Failover"): here an enqueue waits behind another transaction that
holds its queue's row, and fails within the bound instead of waiting for ever. The
failover suite (tests/chaos/test_failover.py) shows the same for a commit that waits for
a synchronous standby."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from queuetopia import DatabaseUnavailable, Queuetopia

BOUND = 0.5


def _hold_queue_row(dsn: str, topia: Queuetopia, queue: str) -> psycopg.Connection[Any]:
    """A transaction that enqueued into `queue` and stays open: it holds the queue's row."""
    conn = psycopg.connect(dsn)
    topia.create_job(queue, "a", {}, connection=conn)
    return conn


def test_an_enqueue_stuck_behind_a_lock_fails_within_the_bound(
    dsn: str, make_topia: Callable[..., Queuetopia]
) -> None:
    topia = make_topia(commit_timeout=BOUND)
    topia.create_job("q", "a", {})  # the pool is open and the queue exists
    holder = _hold_queue_row(dsn, topia, "q")
    try:
        began = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="commit_timeout"):
            topia.create_job("q", "a", {"n": 2})
        assert BOUND <= time.monotonic() - began < BOUND + 2
    finally:
        holder.rollback()
        holder.close()
    assert [j.params for j in topia.list_jobs(queue="q")] == [{}]  # nothing written
    topia.create_job("q", "a", {"n": 3})  # the pool's connection still works


def test_the_async_pool_is_bounded_too(dsn: str, make_topia: Callable[..., Queuetopia]) -> None:
    topia = make_topia(commit_timeout=BOUND)
    topia.create_job("q", "a", {})
    holder = _hold_queue_row(dsn, topia, "q")

    async def enqueue() -> float:
        began = time.monotonic()
        try:
            with pytest.raises(DatabaseUnavailable, match="commit_timeout"):
                await topia.create_job_async("q", "a", {"n": 2})
            return time.monotonic() - began
        finally:
            await topia.close_async_pool()

    try:
        took = asyncio.run(enqueue())
        assert BOUND <= took < BOUND + 2
    finally:
        holder.rollback()
        holder.close()
    assert len(topia.list_jobs(queue="q")) == 1


def test_no_bound_waits_as_long_as_it_takes(
    dsn: str, make_topia: Callable[..., Queuetopia]
) -> None:
    topia = make_topia(commit_timeout=None)
    topia.create_job("q", "a", {})
    holder = _hold_queue_row(dsn, topia, "q")
    release = threading.Timer(3 * BOUND, holder.commit)
    release.start()
    try:
        began = time.monotonic()
        topia.create_job("q", "a", {"n": 2})  # waits for the holder, then succeeds
        assert time.monotonic() - began >= 2 * BOUND
    finally:
        release.join()
        holder.close()
    assert len(topia.list_jobs(queue="q")) == 3
