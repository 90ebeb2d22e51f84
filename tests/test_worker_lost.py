"""The "worker lost" record names the lease that wrote it (docs/design.md), so the
lost worker, if it comes back, can tell that its outcome was discarded."""

from __future__ import annotations

from typing import Any

import psycopg

from queuetopia import Job, Queuetopia
from queuetopia.models import Finish, Found, StepItem, Verdict

from .helpers import record, wait_for
from .helpers import step as run_step
from .test_processes import expire, take_lease


def test_a_worker_lost_record_carries_the_recovering_lease(topia: Queuetopia, dsn: str) -> None:
    topia.create_job("q", "anything")
    with psycopg.connect(dsn, autocommit=True) as conn:
        first = take_lease(conn, topia.scope, "old-owner")
        old, running = first.lease, first.job
        assert running is not None and running.lease_id == old.lease_id
        expire(conn, topia.scope)
        lost = take_lease(conn, topia.scope, "new-owner")
        new = lost.lease
        assert new is not None
        assert lost.found is Found.ZOMBIE and lost.job == running  # to recover
        recorded = record(
            conn, scope=topia.scope, lease=new, job=running, state="pending", error="worker lost",
            backoff=60.0, owner="new-owner",
        )  # fmt: skip
        assert recorded is not None and recorded.attempts == 1
        assert recorded.lease_id == new.lease_id != old.lease_id


def _b_cancelled_behind_a(topia: Queuetopia) -> tuple[list[str], Any, Job]:
    """Queue q: a runs on a worker, b (behind it) cancelled; the worker's stop gives q
    back with its floor past b. Returns the names run so far, the action, and b."""
    ran: list[str] = []

    @topia.action("step", backoff=lambda job: 0.1)
    def step(name: str) -> None:
        ran.append(name)

    step.delay("q", name="a")
    b = step.delay("q", name="b")
    topia.cancel_job(b.id)
    with topia.worker(concurrency=1):
        wait_for(lambda: ran == ["a"])
    return ran, step, b


def test_a_job_put_back_that_a_lost_worker_ran_is_not_skipped(topia: Queuetopia, dsn: str) -> None:
    """Found by the model with a random seed (tests/chaos/test_soak.py, seed
    1363832097). An operator retries b (a rewind); a worker takes the queue, searches
    from the rewind, claims b, and dies. The next holder read the floor its
    predecessor's lease row kept: past b, though b is in line again. It recovered b as
    lost, then searched from that floor and ran c before b's retry, and b never ran
    (docs/design.md, "The floor")."""
    ran, step, b = _b_cancelled_behind_a(topia)
    topia.retry_job(b.id)
    with psycopg.connect(dsn, autocommit=True) as conn:
        lost = take_lease(conn, topia.scope, "lost-owner")
        assert lost.found is Found.CLAIMED and lost.job is not None and lost.job.id == b.id
        expire(conn, topia.scope)
    step.delay("q", name="c")
    with topia.worker(concurrency=1):
        wait_for(lambda: len(ran) == 3, timeout=20, what="a, b and c to run")
    assert ran == ["a", "b", "c"]
    recovered = topia.get_job(b.id)
    assert recovered is not None and recovered.attempts == 2  # the lost attempt counted


def test_a_job_put_back_under_a_live_lease_is_not_skipped_once_its_worker_dies(
    topia: Queuetopia, dsn: str
) -> None:
    """The same, with the rewind found by the holder's own step: it marks the rewind
    seen in its lease row, so that row's floor must come back to it too."""
    ran, step, b = _b_cancelled_behind_a(topia)
    step.delay("q", name="c")
    with psycopg.connect(dsn, autocommit=True) as conn:
        held = take_lease(conn, topia.scope, "lost-owner")
        assert held.found is Found.CLAIMED and held.job is not None
        topia.retry_job(b.id)  # while c runs: b is back in line, before it
        ran.append("c")
        done = Finish(held.job, Verdict.DONE, None, None, None)
        item = StepItem("q", held.lease, held.floor, held.seen, done, claim=True)
        found = run_step(conn, topia.scope, item, owner="lost-owner")
        assert found.found is Found.CLAIMED and found.job is not None and found.job.id == b.id
        expire(conn, topia.scope)
    step.delay("q", name="d")
    with topia.worker(concurrency=1):
        wait_for(lambda: len(ran) == 4, timeout=20, what="b and d to run")
    assert ran == ["a", "c", "b", "d"]


def test_a_step_that_searches_from_a_rewind_marks_it_seen_and_clears_it(
    topia: Queuetopia, dsn: str
) -> None:
    """What a step writes when it applies a rewind (queuetopia_rewinds_apply, called
    only by steps that have one): its lease row counts the rewind seen, with the floor
    brought back to the job put back, and the queue row's rewind position is cleared;
    a step with no rewind to apply writes neither."""
    _, step, b = _b_cancelled_behind_a(topia)
    step.delay("q", name="c")
    rows = (
        "SELECT l.rewinds_seen, l.floor_seq, q.rewinds, q.rewind_seq"
        "  FROM queuetopia_leases l JOIN queuetopia_queues q USING (scope, queue)"
        " WHERE l.scope = %s AND l.queue = 'q'"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        held = take_lease(conn, topia.scope, "owner")
        assert held.job is not None and held.lease is not None
        topia.retry_job(b.id)  # b is back in line, behind the floor
        seen_before, _, rewinds, rewind_seq = conn.execute(rows, (topia.scope,)).fetchone()
        assert rewinds > seen_before and rewind_seq == b.seq
        done = Finish(held.job, Verdict.DONE, None, None, None)
        item = StepItem("q", held.lease, held.floor, held.seen, done, claim=True)
        found = run_step(conn, topia.scope, item, owner="owner")
        assert found.job is not None and found.job.id == b.id
        seen, floor_seq, rewinds_after, rewind_after = conn.execute(rows, (topia.scope,)).fetchone()
        assert (seen, rewinds_after, rewind_after) == (rewinds, rewinds, None)
        assert floor_seq <= b.seq
        # Nothing to apply: the next step leaves both rows as they are.
        done = Finish(found.job, Verdict.DONE, None, None, None)
        again = StepItem("q", found.lease, found.floor, found.seen, done, claim=True)
        run_step(conn, topia.scope, again, owner="owner")
        row = conn.execute(rows, (topia.scope,)).fetchone()
        assert (row[0], row[3]) == (rewinds, None)
