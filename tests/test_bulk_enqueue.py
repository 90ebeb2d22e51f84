"""Bulk enqueue for many queues (docs/enqueue.md): `enqueue_many` takes JobRequests
for any number of queues and actions, validates them like `.delay`, writes them in one
statement, and keeps each queue's order, also when it races single producers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queuetopia import Job, JobRequest, Queuetopia, ValidationError
from queuetopia.testing import drain

Conn = psycopg.Connection[Any]


@pytest.fixture
def db(dsn: str) -> Iterator[Conn]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def count_jobs(db: Conn, scope: str) -> int:
    row = db.execute("SELECT count(*) FROM queuetopia_jobs WHERE scope = %s", (scope,)).fetchone()
    assert row is not None
    return int(row[0])


def test_one_call_enqueues_for_many_queues_and_actions_in_order(topia: Queuetopia) -> None:
    ran: list[tuple[str, int]] = []

    @topia.action("a")
    def a(i: int) -> None:
        ran.append(("a", i))

    @topia.action("b")
    def b(i: int) -> int:
        ran.append(("b", i))
        return i

    items = [JobRequest(f"customer:{i % 3}", "a" if i % 2 else "b", {"i": i}) for i in range(12)]
    jobs = topia.enqueue_many(items)
    assert [(j.queue, j.action, j.params) for j in jobs] == [
        (r.queue, r.action, r.params) for r in items
    ]
    for queue in {j.queue for j in jobs}:
        seqs = [j.seq for j in jobs if j.queue == queue]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    drain(topia)
    for queue in ("customer:0", "customer:1", "customer:2"):
        wanted = [i for i in range(12) if f"customer:{i % 3}" == queue]
        got = [i for _, i in ran if f"customer:{i % 3}" == queue]
        assert got == wanted


def test_options_and_schedules_per_item(topia: Queuetopia) -> None:
    @topia.action("slow", timeout=7, max_attempts=4)
    def slow() -> None: ...

    later = datetime.now(UTC) + timedelta(hours=1)
    jobs = topia.enqueue_many(
        [
            JobRequest("q1", "slow"),
            JobRequest("q2", "slow", timeout=timedelta(seconds=3), max_attempts=9),
            JobRequest("q3", "slow", scheduled_at=later),
            JobRequest("q4", "elsewhere", {"x": [1, "two"]}, max_backoff=5),
        ]
    )
    assert (jobs[0].timeout, jobs[0].max_attempts) == (7, 4)
    assert (jobs[1].timeout, jobs[1].max_attempts) == (3, 9)
    assert jobs[2].scheduled_at == later
    assert (jobs[3].timeout, jobs[3].max_attempts, jobs[3].max_backoff) == (60, 20, 5)


def test_one_bad_item_writes_nothing_and_is_named(topia: Queuetopia, db: Conn) -> None:
    @topia.action("typed")
    def typed(n: int) -> None: ...

    items = [
        JobRequest("q1", "typed", {"n": 1}),
        JobRequest("q2", "untyped", {"fine": True}),
        JobRequest("q3", "typed", {"n": "not a number"}),
    ]
    with pytest.raises(ValidationError, match=r"^item 2: invalid params: n: "):
        topia.enqueue_many(items)
    with pytest.raises(ValidationError, match=r"item 1: .* is not JSON-serialisable"):
        topia.enqueue_many([items[0], JobRequest("q2", "untyped", {"x": object()})])
    with pytest.raises(ValidationError, match="item 1: expected a JobRequest"):
        topia.enqueue_many([items[0], ("q", "typed", {})])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="queue name"):
        topia.enqueue_many([JobRequest("", "typed", {"n": 1})])
    assert count_jobs(db, topia.scope) == 0
    assert topia.enqueue_many([]) == []


def test_a_fan_out_is_one_transaction_of_the_callers_connection(
    topia: Queuetopia, dsn: str, db: Conn
) -> None:
    with psycopg.connect(dsn) as conn:
        jobs = topia.enqueue_many(
            [JobRequest(f"customer:{i}", "notify", {"i": i}) for i in range(200)],
            connection=conn,
        )
        assert len(jobs) == 200 and count_jobs(db, topia.scope) == 0  # not yet committed
        conn.rollback()
    assert count_jobs(db, topia.scope) == 0
    jobs = topia.enqueue_many([JobRequest(f"customer:{i}", "notify") for i in range(200)])
    assert count_jobs(db, topia.scope) == 200 and len({j.queue for j in jobs}) == 200


def test_a_fan_out_wakes_the_workers_once_naming_its_queues(topia: Queuetopia, dsn: str) -> None:
    """One notification per call: the scope, then the queues it wrote to; a fan-out
    whose names would not fit in a notification says "every queue" ('') instead."""
    wide = [JobRequest(f"{i:04}-" + "w" * 200, "x") for i in range(40)]  # over 8,000 bytes
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN queuetopia")
        topia.enqueue_many([JobRequest(f"q{i}", "x") for i in range(50)])
        topia.enqueue_many([JobRequest("only", "x"), JobRequest("only", "x")])
        topia.enqueue_many(wide)
        got = [json.loads(n.payload) for n in listener.notifies(timeout=1.0, stop_after=4)]
    ours = [payload for payload in got if payload[0] == topia.scope]
    assert ours == [
        [topia.scope, *sorted(f"q{i}" for i in range(50))],
        [topia.scope, "only"],
        [topia.scope, ""],
    ]


def test_enqueue_many_async(topia: Queuetopia) -> None:
    async def run() -> list[Job]:
        try:
            return await topia.enqueue_many_async(
                [JobRequest("a", "x"), JobRequest("b", "y", {"k": 1})]
            )
        finally:
            await topia.close_async_pool()

    jobs = asyncio.run(run())
    assert [(j.queue, j.action) for j in jobs] == [("a", "x"), ("b", "y")]
    assert topia.get_job(jobs[1].id) == jobs[1]


def test_bulk_and_single_producers_racing_on_one_queue_keep_commit_order(
    topia: Queuetopia, dsn: str
) -> None:
    """Threads enqueue into the same queues, singly and in bulk, each in its own
    transaction; the queue's order (seq and scheduled_at) is the order of commits."""
    commits: list[list[int]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def producer(worker: int) -> None:
        try:
            with psycopg.connect(dsn) as conn:
                for round_ in range(15):
                    if (worker + round_) % 2:
                        items = [
                            JobRequest(queue, "tag", {"w": worker, "r": round_, "k": k})
                            for k in range(3)
                            for queue in ("shared", f"own:{worker}")
                        ]
                        jobs = topia.enqueue_many(items, connection=conn)
                    else:
                        jobs = [
                            topia.create_job(
                                "shared", "tag", {"w": worker, "r": round_}, connection=conn
                            )
                        ]
                    with lock:  # the commit and its record happen in the same order
                        conn.commit()
                        commits.append([j.id for j in jobs if j.queue == "shared"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    line = [job.id for job in topia.list_jobs(queue="shared", limit=1000)]
    by_id = {job.id: job for job in topia.list_jobs(queue="shared", limit=1000)}
    in_line = sorted(line, key=lambda i: (by_id[i].scheduled_at, by_id[i].seq))
    assert in_line == [job_id for batch in commits for job_id in batch]


# What PostgreSQL can store as JSON text: no NUL, no lone surrogate (keys too).
storable_text = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(storable_text),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(storable_text, max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
request_items = st.lists(
    st.builds(
        JobRequest,
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["typed", "free"]),
        st.fixed_dictionaries({"n": st.integers(-5, 5)}, optional={"extra": json_values}),
        timeout=st.none() | st.floats(0.5, 100),
        max_attempts=st.none() | st.integers(1, 5),
    ),
    max_size=20,
)


@pytest.fixture
def typed_topia(topia: Queuetopia) -> Queuetopia:
    @topia.action("typed", timeout=11)
    def typed(n: int, extra: Any = None) -> None: ...

    return topia


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=request_items)
def test_mixed_items_come_back_as_asked_in_each_queues_order(
    typed_topia: Queuetopia, items: list[JobRequest]
) -> None:
    topia = typed_topia
    prefix = uuid.uuid4().hex[:8]  # a fresh set of queues per example
    items = [dataclasses.replace(item, queue=f"{prefix}:{item.queue}") for item in items]
    jobs = topia.enqueue_many(items)
    assert len(jobs) == len(items)
    for job, item in zip(jobs, items, strict=True):
        assert (job.queue, job.action) == (item.queue, item.action)
        assert job.params["n"] == item.params["n"]
        default = 11.0 if item.action == "typed" else 60.0
        assert job.timeout == (item.timeout if item.timeout is not None else default)
        assert job.max_attempts == (item.max_attempts or 20)
    stored = {job.id: job for job in topia.list_jobs(limit=1000) if job.queue.startswith(prefix)}
    assert stored == {job.id: job for job in jobs}  # what the call returns is the row as stored
    for queue in {item.queue for item in items}:
        mine = [j for j in jobs if j.queue == queue]
        assert [j.seq for j in mine] == sorted(j.seq for j in mine)


def test_delay_many_and_create_job_go_through_the_same_path(topia: Queuetopia) -> None:
    @topia.action("t")
    def t(n: int) -> None: ...

    many = t.delay_many("q", [{"n": 1}, {"n": 2}])
    one = topia.create_job("q", "t", {"n": 3}, unique_key="k")
    seqs = [j.seq for j in many] + [one.seq]
    assert seqs == sorted(set(seqs))  # in call order, then commit order
    with pytest.raises(ValidationError, match=r"^invalid params"):  # no "item" prefix
        t.delay_many("q", [{"n": 1}, {"n": "x"}])


def test_returned_jobs_can_wait_for_their_result(topia: Queuetopia) -> None:
    [job] = topia.enqueue_many([JobRequest("q", "x")])
    assert isinstance(job, Job)
    with pytest.raises(TimeoutError, match="still pending"):
        job.wait(timeout=0.01)
