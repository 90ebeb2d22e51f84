"""The ordering and blocking rules (SPEC §3), with an in-process worker."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from queuetopia import JobState, QueueStatus, Queuetopia

from .helpers import wait_for


def states(topia: Queuetopia) -> dict[int, str]:
    return {job.id: job.state.value for job in topia.list_jobs(limit=1000)}


def test_jobs_of_one_queue_run_one_at_a_time_in_order(topia: Queuetopia) -> None:
    ran: list[int] = []
    running = threading.Semaphore(1)

    @topia.action("record")
    def record(n: int) -> None:
        assert running.acquire(blocking=False), "two jobs of one queue overlapped"
        time.sleep(0.002)
        ran.append(n)
        running.release()

    record.delay_many("q", [{"n": i} for i in range(30)])
    with topia.worker(concurrency=4):
        wait_for(lambda: len(ran) == 30)
    assert ran == list(range(30))


def test_failed_head_blocks_only_its_queue(topia: Queuetopia) -> None:
    ran: list[str] = []

    @topia.action("fail")
    def fail() -> None:
        raise RuntimeError("boom")

    @topia.action("ok")
    def ok(tag: str) -> None:
        ran.append(tag)

    fail.delay("blocked")
    ok.delay("blocked", tag="behind")
    ok.delay("free", tag="free-1")
    ok.delay("free", tag="free-2")
    with topia.worker(concurrency=2):
        wait_for(lambda: ran == ["free-1", "free-2"])
        blocked = wait_for(
            lambda: next(q for q in topia.list_queues() if q.queue == "blocked").last_error
        )
        time.sleep(0.3)
    assert "RuntimeError: boom" in blocked
    assert "behind" not in ran
    info = {q.queue: q for q in topia.list_queues()}
    assert info["blocked"].status == QueueStatus.BLOCKED
    assert info["blocked"].pending == 2
    assert info["blocked"].blocked_since is not None
    assert info["free"].status == QueueStatus.IDLE


def test_backoff_follows_the_default_formula(topia: Queuetopia) -> None:
    @topia.action("fail")
    def fail() -> None:
        raise RuntimeError("boom")

    job = fail.delay("q")
    with topia.worker():
        failed = wait_for(
            lambda: (j := topia.get_job(job.id)) and j.attempts == 1 and j.next_attempt_at and j
        )
    assert failed.state == JobState.PENDING
    assert failed.next_attempt_at - failed.updated_at == timedelta(seconds=2)


def test_custom_backoff_and_retry_after_the_wait(topia: Queuetopia) -> None:
    calls: list[int] = []

    @topia.action("flaky", backoff=lambda job: 0.2 * job.attempts)
    def flaky(job) -> str:  # type: ignore[no-untyped-def]
        calls.append(job.attempts)
        if job.attempts < 3:
            raise RuntimeError("not yet")
        return "finally"

    job = flaky.delay("q")
    with topia.worker():
        done = wait_for(lambda: (j := topia.get_job(job.id)) and j.state == "done" and j)
    assert calls == [1, 2, 3]
    assert done.result == "finally"
    assert done.attempts == 3


def test_future_job_never_blocks_an_earlier_one(topia: Queuetopia) -> None:
    ran: list[str] = []

    @topia.action("tag")
    def tag(name: str) -> None:
        ran.append(name)

    later = tag.schedule("q", at=timedelta(hours=1), name="later")
    tag.delay("q", name="now")
    with topia.worker():
        wait_for(lambda: ran == ["now"])
    assert topia.get_job(later.id).state == JobState.PENDING
    info = topia.list_queues()[0]
    assert info.status == QueueStatus.WAITING
    assert info.head is not None and info.head.id == later.id


def test_scheduled_job_runs_when_due_without_a_poll(topia: Queuetopia) -> None:
    ran: list[float] = []

    @topia.action("tick")
    def tick() -> None:
        ran.append(time.monotonic())

    start = time.monotonic()
    tick.schedule("q", at=timedelta(seconds=0.5))
    with topia.worker():  # poll_interval is 60s: only the self-wake can run it
        wait_for(lambda: ran, timeout=5)
    assert 0.4 < ran[0] - start < 3.0


def test_exhausted_job_fails_and_its_queue_moves_on(topia: Queuetopia) -> None:
    ran: list[str] = []

    @topia.action("fail", max_attempts=2, backoff=lambda job: 0.05)
    def fail() -> None:
        raise RuntimeError("boom")

    @topia.action("ok")
    def ok() -> None:
        ran.append("ok")

    bad = fail.delay("q")
    ok.delay("q")
    with topia.worker():
        wait_for(lambda: ran == ["ok"])
    job = topia.get_job(bad.id)
    assert job.state == JobState.FAILED and job.attempts == 2


def test_exhausted_job_with_block_holds_its_queue_until_retried(topia: Queuetopia) -> None:
    ran: list[str] = []
    healthy = threading.Event()

    @topia.action("fail", max_attempts=1, on_exhausted="block")
    def fail() -> None:
        if not healthy.is_set():
            raise RuntimeError("boom")
        ran.append("fail")

    @topia.action("ok")
    def ok() -> None:
        ran.append("ok")

    bad = fail.delay("q")
    ok.delay("q")
    with topia.worker():
        wait_for(lambda: topia.get_job(bad.id).state == JobState.FAILED)
        time.sleep(0.3)
        assert ran == []
        assert topia.list_queues()[0].status == QueueStatus.BLOCKED
        healthy.set()
        retried = topia.retry_job(bad.id)
        assert retried.attempts == 0 and retried.state == JobState.PENDING
        wait_for(lambda: ran == ["fail", "ok"])


def test_cancel_skips_a_blocking_job(topia: Queuetopia) -> None:
    ran: list[str] = []

    @topia.action("fail")
    def fail() -> None:
        raise RuntimeError("boom")

    @topia.action("ok")
    def ok() -> None:
        ran.append("ok")

    bad = fail.delay("q")
    ok.delay("q")
    with topia.worker():
        wait_for(
            lambda: topia.get_job(bad.id).state == JobState.PENDING and topia.get_job(bad.id).error
        )
        cancelled = topia.cancel_job(bad.id, reason="bad data")
        wait_for(lambda: ran == ["ok"])
    assert cancelled.state == JobState.CANCELLED
    assert cancelled.error.startswith("cancelled: bad data")


def test_retried_failed_job_runs_before_the_jobs_behind_it(topia: Queuetopia) -> None:
    ran: list[str] = []
    gate = threading.Event()

    @topia.action("fail", max_attempts=1)
    def fail() -> None:
        if not gate.is_set():
            raise RuntimeError("boom")
        ran.append("retried")

    @topia.action("ok")
    def ok(tag: str) -> None:
        ran.append(tag)
        if tag == "a":
            gate.wait(5)

    bad = fail.delay("q")
    ok.delay("q", tag="a")
    ok.delay("q", tag="b")
    with topia.worker():
        wait_for(lambda: ran == ["a"])
        topia.retry_job(bad.id)  # while "a" runs; "b" has not run yet
        gate.set()
        wait_for(lambda: len(ran) == 3)
    assert ran == ["a", "retried", "b"]


def test_paused_queue_starts_nothing_until_resumed(topia: Queuetopia) -> None:
    ran: list[str] = []

    @topia.action("ok")
    def ok(tag: str) -> None:
        ran.append(tag)

    topia.pause_queue("q")
    ok.delay("q", tag="x")
    ok.delay("other", tag="y")
    with topia.worker():
        wait_for(lambda: ran == ["y"])
        time.sleep(0.3)
        assert ran == ["y"]
        assert {q.queue: q.status for q in topia.list_queues()}["q"] == QueueStatus.PAUSED
        topia.resume_queue("q")
        wait_for(lambda: ran == ["y", "x"])


def test_unknown_action_fails_and_blocks_until_deployed(make_topia, topia: Queuetopia) -> None:  # type: ignore[no-untyped-def]
    job = topia.create_job("q", "not_deployed", {"x": 1})
    with topia.worker():
        failed = wait_for(lambda: (j := topia.get_job(job.id)) and j.error and j)
    assert failed.error == "unknown action 'not_deployed'"
    deployed = make_topia(scope=topia.scope)
    ran: list[int] = []

    @deployed.action("not_deployed")
    def not_deployed(x: int) -> None:
        ran.append(x)

    deployed.retry_job(job.id)
    with deployed.worker():
        wait_for(lambda: ran == [1])


def test_scopes_are_isolated(make_topia) -> None:  # type: ignore[no-untyped-def]
    a, b = make_topia(), make_topia()
    ran: list[str] = []

    @a.action("ok")
    def ok_a() -> None:
        ran.append("a")

    @b.action("ok")
    def ok_b() -> None:
        ran.append("b")

    ok_a.delay("q")
    ok_b.delay("q")
    with a.worker():
        wait_for(lambda: ran == ["a"])
        time.sleep(0.2)
    assert ran == ["a"]
    assert [j.scope for j in b.list_jobs()] == [b.scope]
    assert b.list_jobs()[0].state == JobState.PENDING
    assert a.get_job(b.list_jobs()[0].id) is None


def test_success_stores_result_and_attempt_fields(topia: Queuetopia) -> None:
    @topia.action("add")
    def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    @topia.action("opaque")
    def opaque() -> object:
        return object()

    job = add.delay("q", a=1, b=2)
    other = opaque.delay("q")
    with topia.worker(name="tester"):
        done = wait_for(lambda: (j := topia.get_job(other.id)) and j.state == "done" and j)
    first = topia.get_job(job.id)
    assert first.result == {"sum": 3}
    assert first.attempts == 1 and first.done_at is not None
    assert first.attempted_by is not None and first.attempted_by.endswith(":tester")
    assert done.result is None


def test_many_queues_share_few_slots_fairly_and_leave_no_lease(topia: Queuetopia, db) -> None:  # type: ignore[no-untyped-def]
    ran: dict[str, list[int]] = {}

    @topia.action("record")
    def record(queue: str, n: int) -> None:
        ran.setdefault(queue, []).append(n)

    for q in range(100):
        record.delay_many(f"q{q}", [{"queue": f"q{q}", "n": n} for n in range(30)])
    with topia.worker(concurrency=10):
        # A lost wake-up or a leaked lease would stall here until the 60 s poll.
        wait_for(lambda: sum(map(len, ran.values())) == 3000, timeout=45)
    assert all(ran[f"q{q}"] == list(range(30)) for q in range(100))
    leases = db.execute(
        "SELECT count(*) FROM queuetopia_leases WHERE scope = %s AND locked_until > now()",
        (topia.scope,),
    ).fetchone()[0]
    assert leases == 0
