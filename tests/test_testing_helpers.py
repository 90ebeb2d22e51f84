"""queuetopia.testing (SPEC §8): drain runs due jobs in the calling thread by the worker's
rules; assert_job_created / refute_job_created check what was enqueued."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest

from queuetopia import JobState, QueueStatus, Queuetopia
from queuetopia.testing import assert_job_created, drain, refute_job_created


def test_drain_runs_due_jobs_in_order_in_the_calling_thread(topia: Queuetopia) -> None:
    ran: list[tuple[int, int]] = []

    @topia.action("record")
    def record(n: int) -> int:
        ran.append((n, threading.get_ident()))
        return n * 10

    record.delay_many("q", [{"n": i} for i in range(5)])
    result = drain(topia)
    assert [n for n, _ in ran] == [0, 1, 2, 3, 4]
    assert {thread for _, thread in ran} == {threading.get_ident()}
    assert (result.ran, result.done, result.failed, result.retried) == (5, 5, 0, 0)
    assert [job.result for job in result.jobs] == [0, 10, 20, 30, 40]
    assert all(job.state == JobState.DONE for job in result.jobs)
    assert drain(topia).ran == 0


def test_drain_leaves_a_blocked_queue_blocked_and_runs_the_others(topia: Queuetopia) -> None:
    ran: list[str] = []

    @topia.action("fail")
    def fail() -> None:
        raise RuntimeError("boom")

    @topia.action("ok")
    def ok(tag: str) -> None:
        ran.append(tag)

    failing = fail.delay("blocked")
    ok.delay("blocked", tag="behind")
    ok.delay("free", tag="free")

    result = drain(topia)

    assert ran == ["free"]
    assert (result.done, result.retried, result.failed) == (1, 1, 0)
    [attempt] = [job for job in result.jobs if job.id == failing.id]
    assert attempt.attempts == 1 and "RuntimeError: boom" in (attempt.error or "")
    assert attempt.next_attempt_at is not None
    info = {q.queue: q for q in topia.list_queues()}
    assert info["blocked"].status == QueueStatus.BLOCKED
    # The retry is not due yet: a second drain runs nothing.
    assert drain(topia).ran == 0
    assert ran == ["free"]


def test_drain_moves_on_after_the_last_attempt_unless_the_action_blocks(
    topia: Queuetopia,
) -> None:
    ran: list[str] = []

    @topia.action("skipper", max_attempts=1)
    def skipper() -> None:
        raise RuntimeError("gives up")

    @topia.action("blocker", max_attempts=1, on_exhausted="block")
    def blocker() -> None:
        raise RuntimeError("holds the line")

    @topia.action("ok")
    def ok(tag: str) -> None:
        ran.append(tag)

    skipper.delay("skips")
    ok.delay("skips", tag="after skipper")
    blocker.delay("blocks")
    ok.delay("blocks", tag="after blocker")

    result = drain(topia)

    assert ran == ["after skipper"]
    assert (result.failed, result.done) == (2, 1)
    assert {q.queue: q.status for q in topia.list_queues()}["blocks"] == QueueStatus.BLOCKED


def test_drain_keeps_scheduled_jobs_for_later_and_runs_those_due(topia: Queuetopia) -> None:
    ran: list[str] = []

    @topia.action("ok")
    def ok(tag: str) -> None:
        ran.append(tag)

    later = ok.schedule("q", at=timedelta(hours=1), tag="later")
    ok.delay("q", tag="now")  # rule 3.6: the later job does not hold it back

    result = drain(topia)

    assert ran == ["now"]
    assert result.done == 1
    after = topia.get_job(later.id)
    assert after is not None and after.state == JobState.PENDING and after.attempts == 0
    assert {q.queue: q.status for q in topia.list_queues()}["q"] == QueueStatus.WAITING


def test_drain_of_one_queue_leaves_the_others_alone(topia: Queuetopia) -> None:
    ran: list[str] = []

    @topia.action("ok")
    def ok(tag: str) -> None:
        ran.append(tag)

    ok.delay("a", tag="a")
    ok.delay("b", tag="b")
    assert drain(topia, "b").ran == 1
    assert ran == ["b"]
    assert drain(topia).ran == 1
    assert ran == ["b", "a"]


def test_drain_skips_a_paused_queue(topia: Queuetopia) -> None:
    @topia.action("ok")
    def ok() -> None:
        pass

    ok.delay("q")
    topia.pause_queue("q")
    assert drain(topia).ran == 0
    topia.resume_queue("q")
    assert drain(topia).done == 1


def test_drain_runs_the_jobs_that_jobs_enqueue(topia: Queuetopia) -> None:
    ran: list[int] = []

    @topia.action("countdown")
    def countdown(n: int) -> None:
        ran.append(n)
        if n > 0:
            countdown.delay("q", n=n - 1)

    countdown.delay("q", n=3)
    assert drain(topia).done == 4
    assert ran == [3, 2, 1, 0]


def test_drain_stops_after_max_jobs(topia: Queuetopia) -> None:
    @topia.action("forever")
    def forever() -> None:
        forever.delay("q")

    forever.delay("q")
    assert drain(topia, max_jobs=3).ran == 3


def test_assert_job_created_matches_params_as_a_subset(topia: Queuetopia) -> None:
    @topia.action("send_mail")
    def send_mail(to: str, headers: dict[str, str] | None = None) -> None:
        pass

    send_mail.delay("mail", to="a@example.com", headers={"x": "1", "y": "2"})
    send_mail.delay("mail", to="b@example.com")

    [job] = assert_job_created(topia, queue="mail", params={"to": "a@example.com"})
    assert job.params["headers"] == {"x": "1", "y": "2"}
    assert_job_created(topia, action="send_mail", params={"headers": {"y": "2"}})
    assert_job_created(topia, queue="mail", count=2)
    assert_job_created(topia, queue="mail", state="pending", count=2)
    refute_job_created(topia, queue="other")
    refute_job_created(topia, params={"to": "c@example.com"})
    refute_job_created(topia, params={"to": "a@example.com", "cc": "x"})


def test_assert_job_created_sees_scheduled_and_blocked_jobs(topia: Queuetopia) -> None:
    @topia.action("fail")
    def fail(n: int) -> None:
        raise RuntimeError("boom")

    fail.delay("blocked", n=1)
    fail.delay("blocked", n=2)
    fail.schedule("later", at=timedelta(days=1), n=3)
    drain(topia)

    assert_job_created(topia, queue="blocked", count=2)
    assert_job_created(topia, queue="blocked", params={"n": 2}, state=JobState.PENDING)
    assert_job_created(topia, queue="later", params={"n": 3})
    refute_job_created(topia, state="done")


def test_a_failed_assertion_lists_the_jobs_that_exist(topia: Queuetopia) -> None:
    @topia.action("send_mail")
    def send_mail(to: str) -> None:
        pass

    send_mail.delay("mail", to="a@example.com")

    with pytest.raises(AssertionError) as wrong_params:
        assert_job_created(topia, queue="mail", params={"to": "z@example.com"})
    message = str(wrong_params.value)
    assert "expected 1 job(s) matching queue='mail'" in message
    assert "found 0" in message
    assert "queue='mail' action='send_mail' state=pending" in message
    assert '"to": "a@example.com"' in message

    with pytest.raises(AssertionError, match="found 1"):
        refute_job_created(topia, action="send_mail")
    with pytest.raises(AssertionError, match="expected 2 job"):
        assert_job_created(topia, queue="mail", count=2)


def test_a_failed_assertion_on_an_empty_scope_says_so(topia: Queuetopia) -> None:
    with pytest.raises(AssertionError, match="has no jobs"):
        assert_job_created(topia)


def test_params_match_in_their_stored_json_form(topia: Queuetopia) -> None:
    @topia.action("remind")
    def remind(day: date) -> None:
        pass

    remind.delay("q", day=date(2026, 1, 2))
    assert_job_created(topia, params={"day": date(2026, 1, 2)})
    assert_job_created(topia, params={"day": "2026-01-02"})


def test_the_documented_example(topia: Queuetopia) -> None:
    """docs/testing.md"""

    @topia.action("send_mail")
    def send_mail(to: str) -> None:
        pass

    def signup(topia: Queuetopia, email: str) -> None:
        send_mail.delay(f"mail:{email}", to=email)

    signup(topia, "ada@example.com")  # your code, which calls send_mail.delay(...)

    assert_job_created(
        topia, queue="mail:ada@example.com", action="send_mail", params={"to": "ada@example.com"}
    )
    refute_job_created(topia, action="charge")

    result = drain(topia)
    assert (result.done, result.failed, result.retried) == (1, 0, 0)


def test_each_attempt_is_reported_as_it_left_the_job(topia: Queuetopia) -> None:
    calls: list[int] = []

    @topia.action("flaky", backoff=lambda job: 0)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"attempt {len(calls)} failed")
        return "third time"

    flaky.delay("q")
    result = drain(topia)
    assert [(job.state.value, job.attempts) for job in result.jobs] == [
        ("pending", 1),
        ("pending", 2),
        ("done", 3),
    ]
    assert (result.retried, result.done) == (2, 1)
    assert result.jobs[-1].result == "third time"
