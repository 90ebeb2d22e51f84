"""Timeouts (SPEC §3.8) and how actions are called (SPEC §2): sync actions are
interrupted, async ones cancelled, the attempt is recorded as failed with an error
naming the timeout, and a retry never overlaps the execution it replaces."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field

from queuetopia import Job, JobState, JobTimeout, Queuetopia

from .helpers import wait_for


@dataclass
class Executions:
    """Start and end (monotonic clock) of each execution, by attempt."""

    spans: dict[int, list[float]] = field(default_factory=dict)
    seen: dict[int, Job] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, job: Job) -> None:
        with self.lock:
            self.spans[job.attempts] = [time.monotonic()]
            self.seen[job.attempts] = job

    def end(self, job: Job) -> None:
        with self.lock:
            self.spans[job.attempts].append(time.monotonic())

    def assert_no_overlap(self) -> None:
        ordered = [self.spans[a] for a in sorted(self.spans)]
        assert all(len(span) == 2 for span in ordered), self.spans
        for before, after in itertools.pairwise(ordered):
            assert after[0] >= before[1], (
                f"a retry started before the last execution ended: {ordered}"
            )


def wait_done(topia: Queuetopia, job: Job, timeout: float = 15.0) -> Job:
    return wait_for(
        lambda: (j := topia.get_job(job.id)) and j.state in ("done", "failed") and j,
        timeout=timeout,
        what=f"job {job.id} to finish",
    )


def test_a_sync_action_past_its_timeout_is_interrupted_and_retried_without_overlap(
    topia: Queuetopia,
) -> None:
    runs = Executions()

    @topia.action("slow", timeout=0.3, max_attempts=2, backoff=lambda job: 0.0)
    def slow(job: Job) -> str:
        runs.start(job)
        try:
            if job.attempts == 1:
                try:
                    while True:  # far longer than the timeout, in short sleeps
                        time.sleep(0.01)
                except JobTimeout:
                    time.sleep(0.3)  # clean-up after the interruption still counts
                    raise
            return "second time lucky"
        finally:
            runs.end(job)

    job = slow.delay("q")
    with topia.worker():
        done = wait_done(topia, job)
    assert done.state == JobState.DONE and done.attempts == 2
    assert done.result == "second time lucky"
    first = runs.spans[1]
    assert 0.25 < first[1] - first[0] < 5.0  # stopped at its timeout, not after the loop
    runs.assert_no_overlap()
    retried = runs.seen[2]  # the row as the retry claimed it: the first attempt's record
    assert retried.error is not None and "timeout" in retried.error and "0.3s" in retried.error
    assert retried.failing_since is not None


def test_a_sync_action_that_swallows_the_timeout_still_fails_that_attempt(
    topia: Queuetopia,
) -> None:
    ended = threading.Event()
    behind_started: list[float] = []
    swallowed_at: list[float] = []

    @topia.action("stubborn", timeout=0.2, max_attempts=1)
    def stubborn() -> str:
        deadline = time.monotonic() + 0.8
        while time.monotonic() < deadline:
            try:
                time.sleep(0.01)
            except JobTimeout:
                swallowed_at.append(time.monotonic())
        ended.set()
        swallowed_at.append(time.monotonic())
        return "finished anyway"

    @topia.action("behind")
    def behind() -> None:
        behind_started.append(time.monotonic())

    job = stubborn.delay("q")
    behind.delay("q")
    with topia.worker():
        failed = wait_done(topia, job)
        wait_for(lambda: behind_started, what="the job behind to run")
    assert failed.state == JobState.FAILED
    assert failed.result is None
    assert "timeout" in (failed.error or "")
    assert len(swallowed_at) == 2  # interrupted once, then ran to its end
    assert behind_started[0] >= swallowed_at[-1]  # the queue was held until it really ended


def test_a_sync_action_stuck_in_one_long_call_holds_its_queue_until_it_returns(
    topia: Queuetopia,
) -> None:
    runs = Executions()

    @topia.action("sleepy", timeout=0.2, max_attempts=2, backoff=lambda job: 0.0)
    def sleepy(job: Job) -> None:
        runs.start(job)
        try:
            if job.attempts == 1:
                time.sleep(1.0)  # one C call: the interruption lands when it returns
        finally:
            runs.end(job)

    job = sleepy.delay("q")
    with topia.worker():
        done = wait_done(topia, job)
    assert done.state == JobState.DONE and done.attempts == 2
    assert runs.spans[1][1] - runs.spans[1][0] >= 0.95
    runs.assert_no_overlap()
    assert "timeout" in (runs.seen[2].error or "")


def test_a_per_job_timeout_overrides_the_actions(topia: Queuetopia) -> None:
    @topia.action("slow", timeout=60.0, max_attempts=1)
    def slow() -> None:
        while True:
            time.sleep(0.01)

    job = slow.options(timeout=0.2).delay("q")
    with topia.worker():
        failed = wait_done(topia, job)
    assert failed.state == JobState.FAILED
    assert "timeout" in (failed.error or "") and "0.2s" in (failed.error or "")


def test_an_async_action_past_its_timeout_is_cancelled_and_retried_without_overlap(
    topia: Queuetopia,
) -> None:
    runs = Executions()
    cancelled = threading.Event()

    @topia.action("slow", timeout=0.3, max_attempts=2, backoff=lambda job: 0.0)
    async def slow(job: Job) -> str:
        runs.start(job)
        try:
            if job.attempts == 1:
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    cancelled.set()
                    await asyncio.sleep(0.3)  # async clean-up still counts
                    raise
            return "second time lucky"
        finally:
            runs.end(job)

    job = slow.delay("q")
    with topia.worker():
        done = wait_done(topia, job)
    assert cancelled.is_set()
    assert done.state == JobState.DONE and done.attempts == 2
    assert done.result == "second time lucky"
    first = runs.spans[1]
    assert 0.25 < first[1] - first[0] < 5.0
    runs.assert_no_overlap()
    assert "timeout" in (runs.seen[2].error or "")


def test_an_async_action_that_swallows_its_cancellation_still_fails_that_attempt(
    topia: Queuetopia,
) -> None:
    @topia.action("stubborn", timeout=0.2, max_attempts=1)
    async def stubborn() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)
        return "finished anyway"

    job = stubborn.delay("q")
    with topia.worker():
        ended = wait_done(topia, job)
    assert ended.state == JobState.FAILED, (ended.state, ended.result)
    assert "timeout" in (ended.error or "")


def test_an_action_taking_job_receives_the_running_job(topia: Queuetopia) -> None:
    seen: list[Job] = []

    @topia.action("sync_one")
    def sync_one(x: int, job: Job) -> int:
        seen.append(job)
        return x * 2

    @topia.action("async_one")
    async def async_one(job: Job, x: int) -> int:
        await asyncio.sleep(0)
        seen.append(job)
        return x * 3

    first = sync_one.delay("q", x=1)
    second = async_one.delay("q", x=2)
    with topia.worker():
        wait_done(topia, second)
    assert [j.id for j in seen] == [first.id, second.id]
    for job, enqueued in zip(seen, (first, second), strict=True):
        assert job.attempts == 1
        assert job.state == JobState.RUNNING
        assert job.params == enqueued.params  # `job` itself is not a param
        assert job.queue == "q" and job.attempted_at is not None
    assert topia.get_job(first.id).result == 2  # type: ignore[union-attr]
    assert topia.get_job(second.id).result == 6  # type: ignore[union-attr]


def test_async_actions_succeed_and_fail_like_sync_ones(topia: Queuetopia) -> None:
    loops: list[int] = []

    @topia.action("fetch")
    async def fetch(url: str) -> dict[str, str]:
        await asyncio.sleep(0.01)
        loops.append(id(asyncio.get_running_loop()))
        return {"url": url, "status": "ok"}

    @topia.action("broken", max_attempts=1)
    async def broken() -> None:
        await asyncio.sleep(0)
        raise ValueError("async boom")

    ok = fetch.delay("a", url="https://example.com")
    again = fetch.delay("a", url="https://example.org")
    bad = broken.delay("b")
    with topia.worker(concurrency=2):
        done = wait_done(topia, again)
        failed = wait_done(topia, bad)
    assert topia.get_job(ok.id).result == {"url": "https://example.com", "status": "ok"}  # type: ignore[union-attr]
    assert done.result == {"url": "https://example.org", "status": "ok"}
    assert failed.state == JobState.FAILED
    assert failed.error is not None and failed.error.startswith("ValueError: async boom")
    assert len(loops) == 2
