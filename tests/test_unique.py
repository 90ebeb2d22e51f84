"""Unique jobs (docs/unique-jobs.md): while a job with a unique_key is in line in its
queue, enqueueing another with that key returns the existing job, marked
`deduplicated`; racing producers get one job; done, cancelled and parked jobs free
the key; a retry that would make a twin is refused."""

from __future__ import annotations

import threading

import psycopg
import pytest

from queuetopia import InvalidTransition, Job, JobRequest, JobState, Queuetopia, ValidationError
from queuetopia.testing import drain


def test_a_second_enqueue_with_the_key_returns_the_job_in_line(topia: Queuetopia) -> None:
    @topia.action("welcome")
    def welcome(user: int) -> None: ...

    first = welcome.options(unique_key="welcome:42").delay("mail", user=42)
    again = welcome.options(unique_key="welcome:42").delay("mail", user=42)
    other_queue = welcome.options(unique_key="welcome:42").delay("mail:eu", user=42)
    other_key = welcome.options(unique_key="welcome:43").delay("mail", user=43)
    assert not first.deduplicated and again.deduplicated
    assert again.id == first.id and again.model_copy(update={"deduplicated": False}) == first
    assert not other_queue.deduplicated and other_queue.id != first.id
    assert not other_key.deduplicated
    assert len(topia.list_jobs(queue="mail")) == 2


def test_twins_in_one_bulk_call_and_against_the_table(topia: Queuetopia) -> None:
    held = topia.create_job("q", "x", unique_key="k1")
    jobs = topia.enqueue_many(
        [
            JobRequest("q", "x", {"n": 1}, unique_key="k2"),
            JobRequest("q", "x", {"n": 2}, unique_key="k2"),
            JobRequest("q", "x", {"n": 3}, unique_key="k1"),
            JobRequest("q", "x", {"n": 4}),
        ]
    )
    assert [j.deduplicated for j in jobs] == [False, True, True, False]
    assert jobs[1].id == jobs[0].id and jobs[2].id == held.id
    assert jobs[3].seq > jobs[0].seq
    assert len(topia.list_jobs(queue="q")) == 3


def test_done_and_cancelled_jobs_free_their_key(topia: Queuetopia) -> None:
    @topia.action("sync")
    def sync() -> None: ...

    done = sync.options(unique_key="s").delay("q")
    drain(topia)
    second = sync.options(unique_key="s").delay("q")
    assert not second.deduplicated and second.id != done.id
    topia.cancel_job(second.id)
    third = sync.options(unique_key="s").delay("q")
    assert not third.deduplicated and third.id != second.id


def test_retrying_a_job_whose_key_a_twin_holds_is_refused(topia: Queuetopia) -> None:
    @topia.action("flaky", max_attempts=1)
    def flaky() -> None:
        raise RuntimeError("down")

    failed = flaky.options(unique_key="k").delay("q")
    drain(topia)
    assert topia.get_job(failed.id).state == JobState.FAILED  # type: ignore[union-attr]
    twin = flaky.options(unique_key="k").delay("q")
    assert not twin.deduplicated
    with pytest.raises(InvalidTransition, match="another job in queue 'q' holds its unique key"):
        topia.retry_job(failed.id)
    topia.cancel_job(twin.id)
    assert topia.retry_job(failed.id).state == JobState.PENDING


def test_racing_producers_on_one_key_make_one_job(topia: Queuetopia, dsn: str) -> None:
    """Eight threads, each in its own transaction, enqueue the same key at once: one
    job is written, and every producer gets it back."""
    start = threading.Barrier(8)
    got: list[Job] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def producer(n: int) -> None:
        try:
            with psycopg.connect(dsn) as conn:
                start.wait(10)
                job = topia.create_job("race", "x", {"n": n}, unique_key="the-key", connection=conn)
                conn.commit()
            with lock:
                got.append(job)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len({job.id for job in got}) == 1
    assert sorted(job.deduplicated for job in got) == [False] + [True] * 7
    assert len(topia.list_jobs(queue="race")) == 1


def test_a_bad_unique_key_is_refused(topia: Queuetopia) -> None:
    with pytest.raises(ValidationError, match="unique_key name must be 1 to 255"):
        topia.create_job("q", "x", unique_key="")
    assert topia.list_jobs() == []
