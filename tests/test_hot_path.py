"""What the hot path's shortcuts must not change (docs/performance.md): async actions
on the worker's one event loop still see their sockets, timers and callbacks from
other threads, and an application's own event loop policy makes that loop; the
lock-free watchdog still interrupts every execution past its deadline and no other; a
backoff too large for JSON still records its attempt; a caller's connection with a
row factory of its own still gets jobs back."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from queuetopia import Job, JobRequest, JobState, Queuetopia
from queuetopia.models import Interrupt
from queuetopia.testing import drain
from queuetopia.worker.executor import execute


def _job(
    topia: Queuetopia, action: str, params: dict[str, Any] | None = None, **update: Any
) -> Job:
    job = topia.get_job(topia.actions[action].delay("q", **(params or {})).id)
    assert job is not None
    return job.model_copy(update=update)


def test_an_async_action_sees_sockets_timers_and_other_threads(topia: Queuetopia) -> None:
    @topia.action("io")
    async def io() -> list[str]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        line = (await reader.readline()).decode().strip()
        writer.close()
        server.close()
        await asyncio.sleep(0.01)  # a timer
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[str] = loop.create_future()
        # Only the loop's wake-up pipe is registered now: a callback from another
        # thread must still wake a loop that waits without a timeout.
        threading.Timer(0.05, loop.call_soon_threadsafe, (woken.set_result, "woken")).start()
        async with asyncio.timeout(5):
            note = await woken
        # A task that spins on sleep(0) always leaves the loop something ready: the
        # loop must still poll the socket it waits for, or this never ends.
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"spun\n")
        read = asyncio.ensure_future(reader.readline())
        async with asyncio.timeout(5):
            while not read.done():
                await asyncio.sleep(0)
        writer.close()
        server.close()
        return [line, note, read.result().decode().strip()]

    jobs = [topia.actions["io"].delay(f"q{n}") for n in range(3)]  # on the loop together
    with topia.worker(concurrency=3):
        results = [job.wait(timeout=20) for job in jobs]
    assert results == [["ping", "woken", "spun"]] * 3


def test_the_watchdog_interrupts_every_late_execution_and_no_other(topia: Queuetopia) -> None:
    @topia.action("spin")
    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.001)

    late = _job(topia, "spin", {"seconds": 5.0}, timeout=0.05)
    quick = _job(topia, "spin", {"seconds": 0.01}, timeout=30.0)
    outcomes: dict[str, list[Interrupt | None]] = {"late": [], "quick": []}
    lock = threading.Lock()

    def run(kind: str, job: Job) -> None:
        for _ in range(10):
            outcome = execute(job, topia.actions["spin"])
            with lock:
                outcomes[kind].append(outcome.interrupted if not outcome.ok else None)

    threads = [
        threading.Thread(target=run, args=(kind, job))
        for kind, job in [("late", late), ("quick", quick)] * 5
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes["late"] == [Interrupt.TIMEOUT] * 50
    assert outcomes["quick"] == [None] * 50


def test_a_backoff_beyond_json_numbers_still_records_the_attempt(topia: Queuetopia) -> None:
    @topia.action("fails", max_attempts=3, backoff=lambda job: float("inf"))
    def fails() -> None:
        raise RuntimeError("boom")

    job = fails.delay("q")
    drain(topia)
    after = topia.get_job(job.id)
    assert after is not None and after.state == JobState.PENDING and after.attempts == 1
    assert after.next_attempt_at is not None
    assert after.next_attempt_at.year - after.attempted_at.year >= 99  # type: ignore[union-attr]


def test_a_callers_connection_with_dict_rows_gets_jobs_back(topia: Queuetopia, dsn: str) -> None:
    @topia.action("noop")
    def noop(n: int) -> None: ...

    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        one = noop.options(connection=conn).delay("q", n=1)
        many = topia.enqueue_many([JobRequest("q", "noop", {"n": 2})], connection=conn)
    assert (one.params, one.queue) == ({"n": 1}, "q")
    assert [job.params for job in many] == [{"n": 2}]
    assert topia.get_job(one.id) is not None


def test_an_event_loop_policy_of_the_applications_own_is_kept(topia: Queuetopia) -> None:
    """The worker's loop is made by asyncio's policy: uvloop's, if the application
    installs it (docs/actions.md)."""

    class Loop(asyncio.SelectorEventLoop):
        pass

    class Policy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return Loop()

    @topia.action("which")
    async def which() -> str:
        return type(asyncio.get_running_loop()).__name__

    asyncio.set_event_loop_policy(Policy())
    try:
        with topia.worker():
            assert which.delay("q").wait(timeout=20) == "Loop"
    finally:
        asyncio.set_event_loop_policy(None)
    with topia.worker():
        assert which.delay("q").wait(timeout=20) == "_UnixSelectorEventLoop"
