"""Jobs that wait for other jobs (docs/flow-control.md): `options(after=[...])` starts a
job only once every job it names is done; it waits at its queue's head, holding the
queue; a dependency that fails or is cancelled holds it with that reason until an
operator decides; a fan-out and its fan-in go in one `enqueue_many` call, in the
caller's transaction; only existing jobs (or earlier ones of the call) can be named.
Workers poll once a minute here: a dependent starts in time only if the dependency's
completion wakes it."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from queuetopia import Job, JobRequest, JobState, QueueStatus, Queuetopia, ValidationError

from .helpers import wait_for


def _done(topia: Queuetopia, *jobs: Job, timeout: float = 15.0) -> list[Job]:
    def ended() -> list[Job] | None:
        found = [topia.get_job(j.id) for j in jobs]
        return found if all(j and j.state == JobState.DONE for j in found) else None  # type: ignore[misc]

    return wait_for(ended, timeout=timeout, what="the jobs to be done")


def test_a_fan_in_starts_after_every_job_it_names_and_holds_its_queue(
    topia: Queuetopia,
) -> None:
    gate = threading.Event()
    ran: list[str] = []

    @topia.action("step")
    def step(name: str, wait: bool = False) -> None:
        if wait:
            assert gate.wait(10)
        ran.append(name)

    charge = step.delay("payments:7", name="charge", wait=True)
    reserve = step.delay("stock:7", name="reserve")
    invoice = step.options(after=[charge, reserve.id]).delay("invoices:7", name="invoice")
    behind = step.delay("invoices:7", name="behind")  # waits behind the fan-in: order kept
    assert invoice.depends_on == sorted([charge.id, reserve.id])
    with topia.worker(concurrency=4):
        waiting = wait_for(
            lambda: (q := topia.get_queue("invoices:7")) and q.waiting_for == [charge.id] and q
        )  # reserve is done
        assert waiting.status == QueueStatus.WAITING
        assert f"waits for job {charge.id} (running)" in (waiting.held_by or "")
        assert ran == ["reserve"]
        gate.set()
        charge, reserve, invoice, behind = _done(topia, charge, reserve, invoice, behind)
    assert ran == ["reserve", "charge", "invoice", "behind"]
    assert invoice.attempted_at is not None and charge.done_at is not None
    assert invoice.attempted_at >= charge.done_at and invoice.attempted_at >= reserve.done_at


def test_a_failed_dependency_holds_its_dependent_until_an_operator_decides(
    topia: Queuetopia,
) -> None:
    fixed = threading.Event()

    @topia.action("flaky", max_attempts=1)
    def flaky() -> None:
        if not fixed.is_set():
            raise RuntimeError("card declined")

    @topia.action("after")
    def after() -> None: ...

    first = flaky.delay("pay")
    dependent = after.options(after=[first]).delay("ship")
    with topia.worker():
        wait_for(lambda: topia.get_job(first.id).state == JobState.FAILED)
        held = wait_for(lambda: (q := topia.get_queue("ship")) and q.waiting_for and q)
        assert held.status == QueueStatus.BLOCKED
        assert f"waits for job {first.id} (failed)" in (held.held_by or "")
        assert topia.get_job(dependent.id).state == JobState.PENDING  # never on its own
        fixed.set()
        topia.retry_job(first.id)  # the operator fixes the cause and retries
        _done(topia, first, dependent)


def test_a_dependent_of_a_cancelled_job_waits_until_it_is_cancelled_too(
    topia: Queuetopia,
) -> None:
    ran: list[int] = []

    @topia.action("work")
    def work(n: int) -> None:
        ran.append(n)

    later = work.schedule("a", at=timedelta(hours=1), n=0)  # never due in this test
    dependent = work.options(after=[later]).delay("b", n=1)
    behind = work.delay("b", n=2)
    topia.cancel_job(later.id, "not needed")
    with topia.worker():
        held = wait_for(lambda: (q := topia.get_queue("b")) and q.held_by and q)
        assert f"waits for job {later.id} (cancelled)" in (held.held_by or "")
        assert held.status == QueueStatus.BLOCKED
        topia.cancel_job(dependent.id, "its dependency was cancelled")
        _done(topia, behind)
    assert ran == [2]


@pytest.mark.parametrize("commit", [True, False])
def test_a_fan_out_and_its_fan_in_in_one_call_in_the_callers_transaction(
    topia: Queuetopia, dsn: str, commit: bool
) -> None:
    ran: list[str] = []

    @topia.action("part")
    def part(name: str) -> None:
        ran.append(name)

    parts = [JobRequest(f"part:{i}", "part", {"name": f"part {i}"}) for i in range(3)]
    merge = JobRequest("merge", "part", {"name": "merge"}, after=parts)
    tail = JobRequest("part:0", "part", {"name": "after part 0"})
    with psycopg.connect(dsn) as conn:
        jobs = topia.enqueue_many([*parts, merge, tail], connection=conn)
        if not commit:
            conn.rollback()
    if not commit:
        assert topia.list_jobs() == []
        return
    assert jobs[3].depends_on == sorted(j.id for j in jobs[:3])
    assert jobs[4].seq > jobs[0].seq  # list order kept in queue part:0
    with topia.worker(concurrency=4):
        _done(topia, *jobs)
    assert ran.index("merge") > max(ran.index(f"part {i}") for i in range(3))
    assert ran.index("after part 0") > ran.index("part 0")


@pytest.mark.parametrize(
    ("after", "message"),
    [
        ([987654321], "after names no job of scope"),
        (["7"], "after takes jobs or job ids"),
        ([True], "after takes jobs or job ids"),
        ([0], "after takes jobs or job ids"),
        ("12", "after takes jobs or job ids"),
    ],
)
def test_after_names_only_jobs_that_exist_and_bad_input_writes_nothing(
    topia: Queuetopia, after: Any, message: str
) -> None:
    @topia.action("work")
    def work() -> None: ...

    with pytest.raises(ValidationError, match=message):
        work.options(after=after).delay("q")
    assert topia.list_jobs() == []


def test_a_job_of_another_scope_cannot_be_named(make_topia: Any) -> None:
    mine, theirs = make_topia(), make_topia()
    other = theirs.create_job("q", "work", {})
    with pytest.raises(ValidationError, match="after names no job of scope"):
        mine.create_job("q", "work", {}, after=[other.id])
    assert mine.list_jobs() == []


def test_only_earlier_requests_of_the_call_can_be_named(topia: Queuetopia) -> None:
    first = JobRequest("a", "work", {})
    second = JobRequest("b", "work", {}, after=[first])
    with pytest.raises(ValidationError, match="not earlier in this call"):
        topia.enqueue_many([second, first])  # a cycle cannot even be written down
    stranger = JobRequest("c", "work", {})
    with pytest.raises(ValidationError, match="not earlier in this call"):
        topia.enqueue_many([JobRequest("d", "work", {}, after=[stranger])])
    assert topia.list_jobs() == []


def test_dependencies_finishing_while_their_dependents_are_claimed(
    make_topia: Any,
) -> None:
    """Twenty chains across queues, each link 0-20 ms, two workers: every dependent
    starts after each job it names is done (database times), none is left waiting
    (a lost wake would leave it for the minute's poll), and each queue keeps order."""
    topia: Queuetopia = make_topia()
    rng = random.Random(5)

    @topia.action("link")
    def link(ms: int) -> None:
        time.sleep(ms / 1000)

    jobs: list[Job] = []
    for chain in range(20):
        first = link.delay(f"first:{chain % 5}", ms=rng.randint(0, 20))
        second = link.options(after=[first]).delay(f"second:{chain % 4}", ms=rng.randint(0, 20))
        both = link.options(after=[first, second]).delay(f"third:{chain % 3}", ms=0)
        jobs += [first, second, both]
    with topia.worker(concurrency=4), topia.worker(concurrency=4):
        done = {j.id: j for j in _done(topia, *jobs, timeout=30)}
    for job in done.values():
        for dep in job.depends_on:
            assert job.attempted_at is not None and done[dep].done_at is not None
            assert job.attempted_at >= done[dep].done_at, (job.id, dep)
    for queue in {j.queue for j in jobs}:
        line = sorted((j for j in done.values() if j.queue == queue), key=lambda j: j.seq)
        starts = [j.attempted_at for j in line]
        assert starts == sorted(starts), queue  # type: ignore[type-var]


def test_a_fan_in_in_one_async_call_in_the_callers_transaction(topia: Queuetopia, dsn: str) -> None:
    parts = [JobRequest(f"part:{i}", "part", {}) for i in range(2)]
    merge = JobRequest("merge", "part", {}, after=parts)

    async def enqueue(commit: bool) -> list[Job]:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            jobs = await topia.enqueue_many_async([*parts, merge], connection=conn)
            if commit:
                await conn.commit()
            else:
                await conn.rollback()
        return jobs

    asyncio.run(enqueue(False))
    assert topia.list_jobs() == []
    jobs = asyncio.run(enqueue(True))
    assert jobs[2].depends_on == sorted(j.id for j in jobs[:2])
    assert sorted(j.id for j in topia.list_jobs()) == sorted(j.id for j in jobs)


def test_the_step_that_records_the_last_dependency_done_claims_the_dependent(
    topia: Queuetopia, dsn: str
) -> None:
    """Found by the model of the rules (tests/test_model.py, seed 11): a head whose
    last dependency is recorded done by the very step that looks at it is claimed by
    that step, not a step later (queuetopia_waits reads the jobs as they are when the
    step reaches the head)."""
    from queuetopia.models import Finish, Found, StepItem, Verdict

    from .helpers import step, take

    first = topia.create_job("q", "work", {})
    second = topia.create_job("q", "work", {}, after=[first])
    with psycopg.connect(dsn, autocommit=True) as conn:
        taken = take(conn, topia.scope, "q")
        assert taken.job is not None and taken.job.id == first.id
        done = Finish(taken.job, Verdict.DONE)
        item = StepItem("q", taken.lease, taken.floor, taken.seen, done, claim=True)
        found = step(conn, topia.scope, item)
    assert found.recorded and found.awaiting is None
    assert found.found is Found.CLAIMED and found.job is not None and found.job.id == second.id
