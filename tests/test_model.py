"""The ordering and blocking rules (docs/guarantees.md), snoozes, cancels of running
jobs and dependencies (docs/flow-control.md) checked against a model.

A hypothesis state machine drives the real engine one step at a time, the way a
worker does it (take a queue, claim its head from the queue's floor, record outcomes
in batches that claim the next heads, hold idle queues, give them back; see
queuetopia/worker/dispatcher.py), through queuetopia.db.steps on one connection, and
mixes in producers (one of them may keep its transaction open across steps),
operators and the passing of time. After every step the database must agree with a
plain Python model of the rules: each job's state and attempts, and each queue's
head, count and status. Every claim must be the model's runnable head: a floor that
moved too far would claim a later job, or none.

Time: the database clock cannot be moved, so the model counts time in hours and
"an hour passes" moves every stored time of the test's jobs, queues and leases one
hour back (and the floors the worker keeps). Real time elapsed during a run (well
under an hour) then only breaks ties, exactly as the enqueue order does in the model.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, ClassVar

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from queuetopia import InvalidTransition, Job, JobState, QueueStatus, Queuetopia
from queuetopia.db import steps
from queuetopia.models import Finish, Found, Lease, Step, StepItem, Verdict
from queuetopia.worker.holds import Hold

from .helpers import record, take, wait_for

QUEUES = ["a", "b", "c"]
HOUR = timedelta(hours=1)
OWNER, NODE = "model-worker", "model-node"
TTL = 3600.0  # leases never expire by themselves here; a crash expires one on purpose


@dataclass
class ModelJob:
    id: int
    queue: str
    key: tuple[int, int]  # (hour it is scheduled at, order it joined its queue)
    max_attempts: int
    block: bool  # on_exhausted="block"
    state: str = "pending"
    attempts: int = 0
    not_before: int | None = None  # hour of the next attempt after a failed one
    failing: bool = False  # has failed attempts since its last success
    visible: bool = True  # its producer has committed
    cancel_asked: bool = False  # an operator cancelled it while it ran
    snoozed: bool = False  # its last attempt snoozed: waiting, not blocked
    after: tuple[int, ...] = ()  # jobs that must be done before it starts

    @property
    def in_line(self) -> bool:
        return self.visible and (
            self.state in ("pending", "running") or (self.state == "failed" and self.block)
        )


@dataclass
class OpenProducer:
    """A producer whose transaction is still open: its jobs are not visible yet, and
    it holds its queue's lock (no other producer of that queue may enqueue)."""

    conn: psycopg.Connection[Any]
    queue: str
    jobs: list[ModelJob] = field(default_factory=list)
    hours: int = 0  # hours passed while it was open (its rows were not moved back)


class QueueMachine(RuleBasedStateMachine):
    dsn: ClassVar[str]
    conn: ClassVar[psycopg.Connection[Any]]

    def __init__(self) -> None:
        super().__init__()
        self.topia = Queuetopia(dsn=self.dsn, scope=f"model-{uuid.uuid4().hex[:12]}", pool_size=2)
        self.topia.action("skip")(_noop)
        self.topia.action("block", on_exhausted="block")(_noop)
        self.hour = 0
        self.order = itertools.count()
        self.jobs: dict[int, ModelJob] = {}
        self.queues: set[str] = set()
        self.paused: set[str] = set()
        self.holds: dict[str, Hold] = {}  # the queues our worker holds
        self.inflight: dict[str, Job] = {}  # claimed, running under our hold
        self.orphans: dict[str, tuple[Lease, Job]] = {}  # their worker "died"
        self.open: OpenProducer | None = None

    def teardown(self) -> None:
        if self.open is not None:
            self.open.conn.close()
        self.topia.close()

    # -- the model's rules -----------------------------------------------------------

    def line(self, queue: str) -> list[ModelJob]:
        return sorted(
            (j for j in self.jobs.values() if j.queue == queue and j.in_line), key=lambda j: j.key
        )

    def head(self, queue: str) -> ModelJob | None:
        line = self.line(queue)
        return line[0] if line else None

    def running(self, queue: str) -> bool:
        return any(j.queue == queue and j.state == "running" for j in self.jobs.values())

    def runnable(self, queue: str) -> ModelJob | None:
        """The job a worker may start now in `queue`, if any (rules 1-3)."""
        head = self.head(queue)
        if head is None or head.state != "pending" or queue in self.paused:
            return None
        if self.running(queue) or self.awaits(head):
            return None
        if head.key[0] > self.hour or (head.not_before or 0) > self.hour:
            return None
        return head

    def awaits(self, job: ModelJob) -> list[ModelJob]:
        """The jobs `job` waits for that are not done (docs/flow-control.md)."""
        return [self.jobs[i] for i in job.after if self.jobs[i].state != "done"]

    def status(self, queue: str) -> str:
        head = self.head(queue)
        if queue in self.paused:
            return "paused"
        if self.running(queue):
            return "running"
        if head is None:
            return "idle"
        if awaits := self.awaits(head):  # held with its dependencies' reason
            stuck = any(job.state in ("failed", "cancelled") for job in awaits)
            return "blocked" if stuck else "waiting"
        if head.state == "failed" or (head.failing and not head.snoozed):
            return "blocked"
        return "waiting"

    def fail(self, job: ModelJob, backoff: int) -> str:
        """A failed attempt (rules 4, 5); returns the state it leaves the job in."""
        job.failing, job.snoozed = True, False
        if job.attempts >= job.max_attempts:
            job.state, job.not_before = "failed", None
        else:
            job.state, job.not_before = "pending", self.hour + backoff
        return job.state

    def start_running(self, job: ModelJob) -> None:
        job.state, job.attempts, job.not_before = "running", job.attempts + 1, None

    def busy_queue(self) -> str | None:
        """The queue whose producer's transaction is open."""
        return None if self.open is None else self.open.queue

    def hint_held_back(self, queue: str) -> bool:
        """Did the model's hours pass over `queue`'s hint? They move every time stored,
        but not the row of the open producer's queue, which it has locked: that hint
        is late until the producer closes (time itself moves no row: in a real
        database the hint is only ever early; seed 3110521858)."""
        return self.open is not None and self.open.queue == queue and self.open.hours > 0

    # -- producers -------------------------------------------------------------------

    @rule(
        queue=st.sampled_from(QUEUES),
        delay=st.sampled_from([-1, 0, 0, 0, 1, 2]),
        max_attempts=st.integers(1, 3),
        block=st.booleans(),
        count=st.integers(1, 3),
    )
    def enqueue(self, queue: str, delay: int, max_attempts: int, block: bool, count: int) -> None:
        """Jobs due now, later, or an hour ago (which lands behind the floor of a
        worker that already ran later jobs: a rewind)."""
        if queue == self.busy_queue():
            return  # it would wait for the open producer's lock
        action = self.topia.actions["block" if block else "skip"].options(max_attempts=max_attempts)
        if delay == 0:
            made = action.delay_many(queue, [{} for _ in range(count)])
        else:
            made = [action.schedule(queue, at=delay * HOUR) for _ in range(count)]
        self.queues.add(queue)
        for job in made:
            self.jobs[job.id] = ModelJob(
                job.id, queue, (self.hour + delay, next(self.order)), max_attempts, block
            )

    @precondition(lambda self: any(job.visible for job in self.jobs.values()))
    @rule(queue=st.sampled_from(QUEUES), data=st.data())
    def enqueue_after(self, queue: str, data: st.DataObject) -> None:
        """A job that waits for jobs already made, of any queue (its own included): it
        holds its queue, in its place, until they are done (docs/flow-control.md)."""
        if queue == self.busy_queue():
            return  # it would wait for the open producer's lock
        visible = sorted(i for i, job in self.jobs.items() if job.visible)
        unfinished = [i for i in visible if self.jobs[i].state != "done"]
        after = data.draw(
            st.lists(st.sampled_from(unfinished or visible), min_size=1, max_size=2, unique=True)
        )
        job = self.topia.create_job(queue, "skip", {}, max_attempts=2, after=after)
        self.queues.add(queue)
        key = (self.hour, next(self.order))
        self.jobs[job.id] = ModelJob(job.id, queue, key, 2, False, after=tuple(after))

    @precondition(lambda self: self.open is None)
    @rule(queue=st.sampled_from(QUEUES), count=st.integers(1, 2))
    def open_a_producer(self, queue: str, count: int) -> None:
        """A producer enqueues in a transaction it keeps open across the next steps."""
        conn = psycopg.connect(self.dsn)
        action = self.topia.actions["skip"].options(connection=conn)
        made = action.delay_many(queue, [{}] * count)
        self.open = OpenProducer(conn, queue)
        for job in made:
            model = ModelJob(job.id, queue, (self.hour, next(self.order)), 3, False, visible=False)
            self.jobs[job.id] = model
            self.open.jobs.append(model)

    @precondition(lambda self: self.open is not None)
    @rule(commit=st.booleans())
    def close_the_producer(self, commit: bool) -> None:
        assert self.open is not None
        producer, self.open = self.open, None
        if commit:
            producer.conn.commit()
            self.queues.add(producer.queue)
            for job in producer.jobs:
                job.visible = True
            # Its rows missed the hours that passed while it was open: move them now.
            self.conn.execute(
                "UPDATE queuetopia_jobs SET scheduled_at = scheduled_at - %s * interval '1 hour'"
                " WHERE id = ANY(%s)",
                (producer.hours, [job.id for job in producer.jobs]),
            )
            self.conn.execute(
                "UPDATE queuetopia_queues SET ready_at = ready_at - %s * interval '1 hour',"
                " rewind_at = rewind_at - %s * interval '1 hour' WHERE scope = %s AND queue = %s",
                (producer.hours, producer.hours, self.topia.scope, producer.queue),
            )
        else:
            producer.conn.rollback()
            for job in producer.jobs:
                del self.jobs[job.id]
        producer.conn.close()

    # -- a worker, one step at a time --------------------------------------------------

    def step(self, *items: StepItem) -> list[Step]:
        return steps.job_step(
            self.conn, scope=self.topia.scope, owner=OWNER, node=NODE, ttl=TTL, items=items
        )

    def item(self, queue: str, **kwargs: Any) -> StepItem:
        hold = self.holds[queue]
        return StepItem(queue, hold.lease, hold.floor, hold.seen, **kwargs)

    @precondition(lambda self: self.queues - set(self.inflight))
    @rule(data=st.data(), backoff=st.integers(0, 1))
    def claim(self, data: st.DataObject, backoff: int) -> None:
        """Claim a queue's head: from our hold, or taking the queue, recovering a dead
        worker's job first."""
        queue = data.draw(st.sampled_from(sorted(self.queues - set(self.inflight))))
        if queue in self.holds:
            found = self.step(self.item(queue, claim=True))[0]
        else:
            found = take(self.conn, self.topia.scope, queue, owner=OWNER)
            if found.lease is None:  # not due by its hint (only ever early), or paused
                assert self.runnable(queue) is None or self.hint_held_back(queue), (
                    f"{queue}: may run, could not be taken"
                )
                return
            self.holds[queue] = Hold(found.lease, time.monotonic() + TTL, found.floor, found.seen)
        self.holds[queue].searched(found)
        self.claimed(queue, found, backoff)

    def claimed(self, queue: str, found: Step, backoff: int) -> None:
        job = found.job
        if found.found is Found.ZOMBIE:
            assert job is not None
            self.recover(queue, job, backoff)
            return
        if found.found is Found.CLAIMED:
            assert job is not None
            expected = self.runnable(queue)
            assert expected is not None, f"claimed job {job.id}, model says nothing may run"
            assert job.id == expected.id, f"claimed {job.id}, model's head is {expected.id}"
            self.start_running(expected)
            self.inflight[queue] = job
            return
        expected = self.runnable(queue)
        assert expected is None, f"{queue}: nothing claimed, model says {expected.id} may run"

    def recover(self, queue: str, head: Job, backoff: int) -> None:
        """The taken lease finds a dead worker's job running: a failed attempt (rule 9)."""
        assert queue in self.orphans, f"job {head.id} runs, but no worker of it died"
        stale_lease, stale_job = self.orphans.pop(queue)
        assert head.id == stale_job.id
        scope, job = self.topia.scope, self.jobs[head.id]
        stale = record(self.conn, scope=scope, lease=stale_lease, job=stale_job, state="done")
        assert stale is None, "the dead worker's lease could still write (rule 10)"
        state = "failed" if job.attempts >= job.max_attempts else "pending"
        finish = Finish(head, Verdict(state), "worker lost", None, backoff * HOUR.total_seconds())
        [found] = self.step(self.item(queue, finish=finish, claim=True))
        assert found.recorded
        assert self.fail(job, backoff) == state
        if job.cancel_asked:  # a cancel asked while it ran wins over the lost attempt
            job.state, job.not_before, job.snoozed = "cancelled", None, False
        job.cancel_asked = False  # the record consumes the request (a retry runs anew)
        stored = self.topia.get_job(job.id)
        assert stored is not None and stored.state == job.state
        self.holds[queue].searched(found)
        if found.searched:
            self.claimed(queue, found, backoff)

    @precondition(lambda self: self.inflight)
    @rule(data=st.data(), with_stale=st.booleans())
    def finish(self, data: st.DataObject, with_stale: bool) -> None:
        """Record how the running jobs of some queues ended, in one step (a group
        commit); each may claim its queue's next head. With `with_stale`, a dead
        worker's late writes are tried first, and must change nothing."""
        queues = data.draw(
            st.lists(st.sampled_from(sorted(self.inflight)), min_size=1, unique=True)
        )
        if with_stale:
            for lease, job in self.orphans.values():
                scope = self.topia.scope
                assert record(self.conn, scope=scope, lease=lease, job=job, state="done") is None
        items = [self.outcome(data, queue) for queue in queues]
        for item, found in zip(items, self.step(*items), strict=True):
            assert item.finish is not None
            stored = self.topia.get_job(item.finish.job.id)
            expected = self.jobs[item.finish.job.id]
            assert found.recorded and stored is not None and stored.state == expected.state
            assert stored.attempts == expected.attempts
            self.holds[item.queue].searched(found)
            if item.claim and found.searched:
                self.claimed(item.queue, found, 0)
            elif item.claim:  # the job stayed in line (retry, snooze, blocking failure): no search
                # It is the head, unless an operator put an earlier job back in line
                # while it ran; the worker finds that one at its next claim (a rewind).
                finished, head = self.jobs[item.finish.job.id], self.head(item.queue)
                assert finished.in_line and head is not None and head.key <= finished.key

    def outcome(self, data: st.DataObject, queue: str) -> StepItem:
        """Draw how the running job of `queue` ended and apply it to the model: done,
        failed, or snoozed (pending again, held since now, its attempt given back;
        docs/flow-control.md). A cancel asked while it ran turns any end but done
        into cancelled."""
        how = data.draw(st.sampled_from(["done", "failed", "snoozed"]))
        backoff = data.draw(st.integers(0, 1))
        running = self.inflight.pop(queue)
        job = self.jobs[running.id]
        if how == "done":
            job.state, job.failing, job.not_before = "done", False, None
            job.snoozed, state = False, "done"
        elif how == "snoozed":
            job.state, job.failing, job.not_before = "pending", True, self.hour + backoff
            job.attempts, job.snoozed = job.attempts - 1, True
            state = "snoozed"
        else:
            state = self.fail(job, backoff)
        if job.cancel_asked and how != "done":
            job.state, job.not_before, job.snoozed = "cancelled", None, False
            job.attempts += 1 if how == "snoozed" else 0  # a cancel charges the attempt
        job.cancel_asked = False  # the record consumes the request (a retry runs anew)
        seconds = None if how == "done" else backoff * HOUR.total_seconds()
        error = "boom" if how == "failed" else None
        finish = Finish(running, Verdict(state), error, None, seconds)
        return self.item(queue, finish=finish, claim=data.draw(st.booleans()))

    @precondition(lambda self: set(self.holds) - set(self.inflight))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        """Give an idle queue back, with its floor."""
        queue = data.draw(st.sampled_from(sorted(set(self.holds) - set(self.inflight))))
        hold = self.holds.pop(queue)
        released = steps.lease_release(
            self.conn, scope=self.topia.scope, releases=[(hold.lease, hold.floor, hold.seen)]
        )
        assert queue in released
        # A producer that holds the queue's lock leaves the hint as it is (early).
        assert released[queue] == (queue != self.busy_queue())

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """The worker holding a queue dies; its lease runs out."""
        queue = data.draw(st.sampled_from(sorted(self.holds)))
        del self.holds[queue]
        if queue in self.inflight:
            self.orphans[queue] = (self.holds_lease(queue), self.inflight.pop(queue))
        self.conn.execute(
            "UPDATE queuetopia_leases SET locked_until = now() - interval '1 second'"
            " WHERE scope = %s AND queue = %s",
            (self.topia.scope, queue),
        )

    def holds_lease(self, queue: str) -> Lease:
        lease_id, token = self.conn.execute(
            "SELECT lease_id, token FROM queuetopia_leases WHERE scope = %s AND queue = %s",
            (self.topia.scope, queue),
        ).fetchone()  # type: ignore[misc]
        return Lease(queue, lease_id, token)

    # -- time --------------------------------------------------------------------------

    @rule()
    def an_hour_passes(self) -> None:
        scope = self.topia.scope
        self.conn.execute(
            "UPDATE queuetopia_jobs SET scheduled_at = scheduled_at - interval '1 hour',"
            " next_attempt_at = next_attempt_at - interval '1 hour' WHERE scope = %s",
            (scope,),
        )
        self.conn.execute(  # the open producer's queue row may be locked: it moves later
            "UPDATE queuetopia_queues SET ready_at = ready_at - interval '1 hour',"
            " rewind_at = rewind_at - interval '1 hour'"
            " WHERE scope = %s AND queue IS DISTINCT FROM %s",
            (scope, self.busy_queue()),
        )
        self.conn.execute(
            "UPDATE queuetopia_leases SET floor_at = floor_at - interval '1 hour' WHERE scope = %s",
            (scope,),
        )
        for hold in self.holds.values():
            hold.floor = None if hold.floor is None else (hold.floor[0] - HOUR, hold.floor[1])
            if hold.last is not None:
                (at, seq), quiet = hold.last
                hold.last = ((at - HOUR, seq), quiet)
        if self.open is not None:
            self.open.hours += 1
        self.hour += 1

    # -- operators ---------------------------------------------------------------------

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job = self.jobs[data.draw(st.sampled_from(sorted(self.jobs)))]
        if not job.visible or job.queue == self.busy_queue():
            return  # it would wait for the open producer's lock
        if job.state in ("running", "done"):
            try:
                self.topia.retry_job(job.id)
            except InvalidTransition:
                return
            raise AssertionError(f"retried a {job.state} job")
        retried = self.topia.retry_job(job.id)
        if job.state != "pending":
            job.attempts = 0
        job.state, job.not_before = "pending", None
        if job.key[0] > self.hour:  # due now: it joins the line at this moment
            job.key = (self.hour, next(self.order))
        assert (retried.state, retried.attempts) == (job.state, job.attempts)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job = self.jobs[data.draw(st.sampled_from(sorted(self.jobs)))]
        if not job.visible or job.queue == self.busy_queue():
            return  # an operator's change waits for the open producer's lock
        if job.state == "running":  # its worker stops it; recorded when it ends
            asked = self.topia.cancel_job(job.id)
            assert asked.state == "running"
            job.cancel_asked = True
            return
        if job.state not in ("pending", "failed"):
            try:
                self.topia.cancel_job(job.id)
            except InvalidTransition:
                return
            raise AssertionError(f"cancelled a {job.state} job")
        cancelled = self.topia.cancel_job(job.id)
        job.state = "cancelled"
        assert cancelled.state == "cancelled"

    @rule(queue=st.sampled_from(QUEUES), paused=st.booleans())
    def pause_or_resume(self, queue: str, paused: bool) -> None:
        if queue == self.busy_queue():
            return  # it would wait for the open producer's lock on the queue row
        if paused:
            self.topia.pause_queue(queue)
            self.paused.add(queue)
        else:
            self.topia.resume_queue(queue)
            self.paused.discard(queue)
        self.queues.add(queue)

    # -- after every step ------------------------------------------------------------------

    @invariant()
    def the_database_agrees_with_the_model(self) -> None:
        stored = {j.id: j for j in self.topia.list_jobs(limit=10_000)}
        assert set(stored) == {i for i, job in self.jobs.items() if job.visible}
        for job_id, job in self.jobs.items():
            if not job.visible:
                continue
            found = stored[job_id]
            assert (found.state, found.attempts) == (job.state, job.attempts), (
                f"job {job_id}: database {found.state}/{found.attempts}, "
                f"model {job.state}/{job.attempts}"
            )
        infos = {q.queue: q for q in self.topia.list_queues()}
        assert set(infos) == self.queues
        for queue in self.queues:
            info, head = infos[queue], self.head(queue)
            assert (info.head.id if info.head else None) == (head.id if head else None), queue
            assert info.pending == len(self.line(queue)), queue
            assert info.status == self.status(queue), (queue, info.status, self.status(queue))


def _noop() -> None:
    """Never run: the test records outcomes itself."""


def test_the_engine_follows_the_model_of_the_rules(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        QueueMachine.dsn, QueueMachine.conn = dsn, conn
        run_state_machine_as_test(
            QueueMachine,
            settings=settings(
                max_examples=40,
                stateful_step_count=40,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )


# -- scenarios the model covers that a random run rarely reaches ----------------------------


def run_behind_a_retried_head(topia: Queuetopia, conn: psycopg.Connection[Any]) -> tuple[Job, Job]:
    """Given a failed first job and the job behind it running under a lease, an
    operator retries the first job: it is back at the head, ahead of the running one."""
    first = topia.create_job("q", "first", {}, max_attempts=1)
    second = topia.create_job("q", "second", {})
    taken = take(conn, topia.scope, "q")
    assert taken.found is Found.CLAIMED and taken.job is not None and taken.job.id == first.id
    lease = taken.lease
    failed = record(conn, scope=topia.scope, lease=lease, job=taken.job, state="failed")
    assert failed is not None and failed.state == JobState.FAILED
    [claim] = steps.job_step(
        conn,
        scope=topia.scope,
        owner="test-owner",
        node="test-node",
        ttl=TTL,
        items=[StepItem("q", lease, claim=True)],
    )
    assert claim.found is Found.CLAIMED and claim.job is not None and claim.job.id == second.id
    topia.retry_job(first.id)
    return first, second


def test_a_queue_with_a_running_job_behind_a_retried_head_is_running(
    topia: Queuetopia, dsn: str
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        run_behind_a_retried_head(topia, conn)
        [info] = topia.list_queues()
        assert info.status == QueueStatus.RUNNING, info.status


def test_a_dead_workers_job_behind_a_retried_head_is_still_recovered(
    topia: Queuetopia, dsn: str
) -> None:
    ran: list[str] = []
    topia.action("first")(lambda: ran.append("first"))
    topia.action("second", backoff=lambda job: 0.0)(lambda: ran.append("second"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        _, second = run_behind_a_retried_head(topia, conn)
        conn.execute(  # the worker running `second` dies; its lease runs out
            "UPDATE queuetopia_leases SET locked_until = now() - interval '1 second'"
            " WHERE scope = %s",
            (topia.scope,),
        )
    with topia.worker():
        wait_for(lambda: len(ran) == 2, timeout=6, what="both jobs to run")
    assert ran == ["first", "second"]
    recovered = topia.get_job(second.id)
    assert recovered is not None and recovered.attempts == 2


def test_a_step_retried_after_its_reply_was_lost_finds_what_it_did(
    topia: Queuetopia, dsn: str
) -> None:
    """A step that took a queue and claimed its head, recorded an attempt and claimed
    the next, runs again as if its reply had been lost: it finds its lease, the
    record and the running job as they are, and changes nothing twice."""
    first = topia.create_job("q", "noop", {})
    second = topia.create_job("q", "noop", {})
    with psycopg.connect(dsn, autocommit=True) as conn:
        taken = take(conn, topia.scope, "q")
        again = take(conn, topia.scope, "q")
        assert again.lease is None  # a plain second take finds the lease held
        [retried] = steps.job_step(
            conn,
            scope=topia.scope,
            owner="test-owner",
            node="test-node",
            ttl=TTL,
            items=[StepItem("q", None, claim=True, zombies=True, retry=True)],
        )
        assert retried.lease == taken.lease
        assert retried.job is not None and retried.job.id == first.id
        assert retried.job.state == JobState.RUNNING and retried.job.attempts == 1
        assert taken.job is not None
        finish = Finish(taken.job, Verdict.DONE)
        item = StepItem("q", taken.lease, finish=finish, claim=True)
        [done] = steps.job_step(
            conn, scope=topia.scope, owner="test-owner", node="n", ttl=TTL, items=[item]
        )
        assert done.recorded and done.job is not None and done.job.id == second.id
        lost = replace(item, retry=True, zombies=True)
        [redone] = steps.job_step(
            conn, scope=topia.scope, owner="test-owner", node="n", ttl=TTL, items=[lost]
        )
        assert redone.recorded, "the first try's record is recognised"
        assert redone.job is not None and redone.job.id == second.id
        assert redone.job.state == JobState.RUNNING and redone.job.attempts == 1
    assert topia.get_job(first.id).attempts == 1  # type: ignore[union-attr]
