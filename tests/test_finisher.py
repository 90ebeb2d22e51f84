"""Group commit of outcomes: runner threads that finish at once share one statement.

The combining logic is tested with a recording batch function (no SQL involved);
the last test checks, on a real worker and database, that outcomes of several
queues are committed together and every rule still holds."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg
import pytest

from queuetopia import Job, Queuetopia
from queuetopia.db.store import Finish, Lease
from queuetopia.finisher import Finisher, Result

from .helpers import wait_for


def finish_of(job_id: int) -> Finish:
    lease = Lease(queue=f"q{job_id}", lease_id=uuid.uuid4(), token=job_id)
    return Finish(lease, Job.model_construct(id=job_id), "done", claim_next=True)


class Recorder:
    """A batch function that answers each finish with the next job of its queue."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.threads: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, batch: list[Finish]) -> list[Result]:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.batches.append([f.job.id for f in batch])
            self.threads.append(threading.get_ident())
        try:
            if self.fail_on in {f.job.id for f in batch}:
                raise RuntimeError("database said no")
            return [(True, Job.model_construct(id=f.job.id + 1000)) for f in batch]
        finally:
            with self.lock:
                self.in_flight -= 1


def test_a_lone_outcome_is_recorded_at_once_on_the_callers_thread() -> None:
    recorder = Recorder()
    finisher = Finisher(recorder, gather=60.0)
    recorded, claimed = finisher.finish(finish_of(1))
    assert recorded
    assert claimed is not None and claimed.id == 1001
    assert recorder.batches == [[1]]
    assert recorder.threads == [threading.get_ident()]


def test_concurrent_outcomes_share_batches_one_at_a_time_and_each_gets_its_own() -> None:
    recorder = Recorder()
    finisher = Finisher(recorder)
    results: dict[int, int] = {}
    start = threading.Barrier(16)

    def runner(n: int) -> None:
        start.wait()
        job_id = n  # each next job is the one the previous batch claimed, as in a worker
        for _ in range(20):
            recorded, claimed = finisher.finish(finish_of(job_id))
            assert recorded and claimed is not None
            results[job_id] = claimed.id
            job_id = claimed.id

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 16 * 20
    assert all(results[j] == j + 1000 for j in results)
    assert recorder.max_in_flight == 1
    assert sorted(j for batch in recorder.batches for j in batch) == sorted(results)
    assert max(len(batch) for batch in recorder.batches) > 1


def test_an_error_reaches_every_request_of_its_batch_and_the_next_batch_runs() -> None:
    recorder = Recorder(fail_on=7)
    finisher = Finisher(recorder)
    with pytest.raises(RuntimeError, match="database said no"):
        finisher.finish(finish_of(7))
    recorded, claimed = finisher.finish(finish_of(8))
    assert recorded and claimed is not None and claimed.id == 1008


def test_a_job_that_never_reports_back_delays_a_batch_only_by_the_gather_time() -> None:
    recorder = Recorder()
    finisher = Finisher(recorder, gather=0.05)
    _, claimed = finisher.finish(finish_of(1))  # job 1001 is now expected back
    assert claimed is not None
    done = threading.Event()

    def other() -> None:
        finisher.finish(finish_of(2))
        done.set()

    threading.Thread(target=other).start()
    assert done.wait(timeout=10), "a batch waited for a job that never came back"
    finisher.abandon(claimed)


def test_a_worker_commits_outcomes_of_several_queues_together(
    topia: Queuetopia, db: psycopg.Connection[Any]
) -> None:
    ran: dict[str, list[int]] = {}

    @topia.action("noop")
    def noop(queue: str, n: int) -> None:
        ran.setdefault(queue, []).append(n)

    queues = [f"customer:{i}" for i in range(12)]
    for queue in queues:
        noop.delay_many(queue, [{"queue": queue, "n": n} for n in range(25)])
    with topia.worker(concurrency=8):
        wait_for(lambda: sum(len(v) for v in ran.values()) == 12 * 25, timeout=60)
    assert ran == {queue: list(range(25)) for queue in queues}
    # now() is the transaction's start time: jobs recorded by one commit share done_at.
    jobs, commits = db.execute(
        "SELECT count(*), count(DISTINCT done_at) FROM queuetopia_jobs"
        " WHERE scope = %s AND state = 'done' AND attempts = 1",
        (topia.scope,),
    ).fetchone() or (0, 0)
    assert jobs == 12 * 25
    assert commits < jobs, "no two outcomes were ever committed together"
