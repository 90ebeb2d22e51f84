"""The ordering and blocking rules (SPEC §3) checked against a model.

A hypothesis state machine drives the real engine one step at a time, the way a
worker does it (take a lease, claim the head, record the outcome, release; see
queuetopia/runner.py), through queuetopia.db.store on one connection, and mixes in
producers, operators and the passing of time. After every step the database must
agree with a plain Python model of the rules: each job's state and attempts, and
each queue's head, count and status.

Time: the database clock cannot be moved, so the model counts time in hours and
"an hour passes" moves every stored time of the test's jobs and queues one hour back.
Real time elapsed during a run (well under an hour) then only breaks ties, exactly as
the enqueue order does in the model.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
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
from queuetopia.db import store
from queuetopia.db.store import Lease

from .helpers import record, wait_for

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

    @property
    def in_line(self) -> bool:
        return self.state in ("pending", "running") or (self.state == "failed" and self.block)


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
        self.inflight: dict[str, tuple[Lease, Job]] = {}  # claimed, running under our lease
        self.orphans: dict[str, tuple[Lease, Job]] = {}  # their worker "died"

    def teardown(self) -> None:
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
        """The job a worker may start now in `queue`, if any (rules 3.1-3.3)."""
        head = self.head(queue)
        if head is None or head.state != "pending" or queue in self.paused:
            return None
        if self.running(queue):
            return None
        if head.key[0] > self.hour or (head.not_before or 0) > self.hour:
            return None
        return head

    def status(self, queue: str) -> str:
        head = self.head(queue)
        if queue in self.paused:
            return "paused"
        if self.running(queue):
            return "running"
        if head is None:
            return "idle"
        if head.state == "failed" or head.failing:
            return "blocked"
        return "waiting"

    def fail(self, job: ModelJob, backoff: int) -> str:
        """A failed attempt (rules 3.4, 3.5); returns the state it leaves the job in."""
        job.failing = True
        if job.attempts >= job.max_attempts:
            job.state, job.not_before = "failed", None
        else:
            job.state, job.not_before = "pending", self.hour + backoff
        return job.state

    def start_running(self, job: ModelJob) -> None:
        job.state, job.attempts, job.not_before = "running", job.attempts + 1, None

    # -- producers -------------------------------------------------------------------

    @rule(
        queue=st.sampled_from(QUEUES),
        delay=st.sampled_from([0, 0, 0, 1, 2]),
        max_attempts=st.integers(1, 3),
        block=st.booleans(),
        count=st.integers(1, 3),
    )
    def enqueue(self, queue: str, delay: int, max_attempts: int, block: bool, count: int) -> None:
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

    # -- a worker, one step at a time --------------------------------------------------

    @precondition(lambda self: self.queues - set(self.inflight))
    @rule(data=st.data(), backoff=st.integers(0, 1), together=st.booleans())
    def start(self, data: st.DataObject, backoff: int, together: bool) -> None:
        """Lease a queue and start its head, recovering a dead worker's job first.
        With `together`, the head is claimed in the statement that takes the lease."""
        queue = data.draw(st.sampled_from(sorted(self.queues - set(self.inflight))))
        conn, scope = self.conn, self.topia.scope
        taken, _ = store.lease_acquire(
            conn,
            scope=scope,
            owner=OWNER,
            limit=1,
            ttl=TTL,
            queues=[queue],
            skip=[],
            node=NODE if together else None,
        )
        if not taken:
            assert self.runnable(queue) is None, f"{queue}: its head may run but got no lease"
            assert queue not in self.orphans or queue in self.paused, "a dead worker's queue stuck"
            return
        [(lease, first)] = taken
        if first is not None:
            assert together and queue not in self.orphans, "claimed beside a dead worker's job"
            expected = self.runnable(queue)
            assert expected is not None and first.id == expected.id, (first.id, expected)
            self.start_running(expected)
            self.inflight[queue] = (lease, first)
            return
        while True:
            claim = store.job_claim_head(conn, scope=scope, lease=lease, node=NODE)
            assert claim.leased
            head = claim.head
            if claim.claimed:
                assert head is not None
                expected = self.runnable(queue)
                assert expected is not None, f"claimed job {head.id}, model says nothing may run"
                assert head.id == expected.id, f"claimed {head.id}, model's head is {expected.id}"
                self.start_running(expected)
                self.inflight[queue] = (lease, head)
                return
            if head is not None and head.state == "running":
                self.recover(queue, lease, head, backoff)
                continue
            assert self.runnable(queue) is None, f"{queue}: nothing claimed, model says it may run"
            store.lease_release(conn, scope=scope, lease=lease)
            return

    def recover(self, queue: str, lease: Lease, head: Job, backoff: int) -> None:
        """The new lease finds a dead worker's job running: a failed attempt (rule 3.9)."""
        assert queue in self.orphans, f"job {head.id} runs, but no worker of it died"
        stale_lease, stale_job = self.orphans.pop(queue)
        assert head.id == stale_job.id
        scope, job = self.topia.scope, self.jobs[head.id]
        stale = record(self.conn, scope=scope, lease=stale_lease, job=stale_job, state="done")
        assert stale is None, "the dead worker's lease could still write (rule 3.10)"
        state = "failed" if job.attempts >= job.max_attempts else "pending"
        recorded = record(
            self.conn,
            scope=scope,
            lease=lease,
            job=head,
            state=state,
            error="worker lost",
            backoff=backoff * HOUR.total_seconds(),
        )
        assert recorded is not None and recorded.state == self.fail(job, backoff)

    @precondition(lambda self: self.inflight)
    @rule(data=st.data(), with_stale=st.booleans())
    def finish(self, data: st.DataObject, with_stale: bool) -> None:
        """Record how the running jobs of some queues ended, in one statement (a group
        commit); each may claim its queue's next head. With `with_stale`, a dead
        worker's late writes ride along in the same batch and must change nothing."""
        queues = data.draw(
            st.lists(st.sampled_from(sorted(self.inflight)), min_size=1, unique=True)
        )
        batch = [self.outcome(data, queue) for queue in queues]
        stale = [store.Finish(lease, job, "done") for lease, job in self.orphans.values()]
        stale = stale if with_stale else []
        results = store.job_finish_many(
            self.conn, scope=self.topia.scope, node=NODE, batch=batch + stale
        )
        assert not any(recorded for recorded, _ in results[len(batch) :]), "rule 3.10"
        for finish, (recorded, claimed) in zip(batch, results, strict=False):
            stored = store.job_get(self.conn, scope=self.topia.scope, job_id=finish.job.id)
            assert recorded and stored is not None and stored.state == finish.state
            self.after_finish(finish, claimed)

    def outcome(self, data: st.DataObject, queue: str) -> store.Finish:
        """Draw how the running job of `queue` ended and apply it to the model."""
        ok, backoff = data.draw(st.booleans()), data.draw(st.integers(0, 1))
        lease, running = self.inflight.pop(queue)
        job = self.jobs[running.id]
        if ok:
            job.state, job.failing, job.not_before = "done", False, None
            state = "done"
        else:
            state = self.fail(job, backoff)
        return store.Finish(
            lease,
            running,
            state,
            error=None if ok else "boom",
            result="ok" if ok else None,
            backoff=None if ok else backoff * HOUR.total_seconds(),
            claim_next=ok and data.draw(st.booleans()),
        )

    def after_finish(self, finish: store.Finish, claimed: Job | None) -> None:
        queue, lease = finish.lease.queue, finish.lease
        if finish.claim_next:
            expected = self.runnable(queue)
            if claimed is not None:
                assert expected is not None and claimed.id == expected.id, (claimed.id, expected)
                self.start_running(expected)
                self.inflight[queue] = (lease, claimed)
                return
            assert expected is None, f"{queue}: job {expected} may run but was not claimed"
        assert claimed is None
        store.lease_release(self.conn, scope=self.topia.scope, lease=lease)

    @precondition(lambda self: self.inflight)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """The worker running a queue's job dies; its lease runs out."""
        queue = data.draw(st.sampled_from(sorted(self.inflight)))
        self.orphans[queue] = self.inflight.pop(queue)
        self.conn.execute(
            "UPDATE queuetopia_leases SET locked_until = now() - interval '1 second'"
            " WHERE scope = %s AND queue = %s",
            (self.topia.scope, queue),
        )

    # -- time --------------------------------------------------------------------------

    @rule()
    def an_hour_passes(self) -> None:
        scope = self.topia.scope
        self.conn.execute(
            "UPDATE queuetopia_jobs SET scheduled_at = scheduled_at - interval '1 hour',"
            " next_attempt_at = next_attempt_at - interval '1 hour' WHERE scope = %s",
            (scope,),
        )
        self.conn.execute(
            "UPDATE queuetopia_queues SET ready_at = ready_at - interval '1 hour' WHERE scope = %s",
            (scope,),
        )
        self.hour += 1

    # -- operators ---------------------------------------------------------------------

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job = self.jobs[data.draw(st.sampled_from(sorted(self.jobs)))]
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
        assert set(stored) == set(self.jobs)
        for job_id, job in self.jobs.items():
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
                stateful_step_count=30,
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
    taken, _ = store.lease_acquire(
        conn, scope=topia.scope, owner=OWNER, limit=1, ttl=TTL, queues=["q"], skip=[]
    )
    [(lease, _)] = taken
    claim = store.job_claim_head(conn, scope=topia.scope, lease=lease, node=NODE)
    assert claim.claimed and claim.head is not None and claim.head.id == first.id
    failed = record(
        conn, scope=topia.scope, lease=lease, job=claim.head, state="failed", error="boom"
    )
    assert failed is not None and failed.state == JobState.FAILED
    claim = store.job_claim_head(conn, scope=topia.scope, lease=lease, node=NODE)
    assert claim.claimed and claim.head is not None and claim.head.id == second.id
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
    assert "worker lost" in (recovered.error or "")
