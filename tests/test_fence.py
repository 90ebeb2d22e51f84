"""`job.fence` inside an action: the token of the lease the attempt runs under
(docs/actions.md, "Fencing tokens"). The same for the jobs one lease runs, greater for
every later holder of the queue, whoever it is; never stored."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from queuetopia import Job, Queuetopia
from queuetopia.testing import drain

from .helpers import wait_for
from .test_processes import expire, take_lease


def _recording(topia: Queuetopia) -> list[tuple[int, int | None, int | None]]:
    """(n, job.fence, the queue's live lease token) for every attempt."""
    seen: list[tuple[int, int | None, int | None]] = []

    @topia.action("fenced")
    def fenced(n: int, job: Job) -> None:
        tokens = [lease.token for lease in topia.list_leases() if lease.queue == job.queue]
        seen.append((n, job.fence, tokens[0] if tokens else None))

    return seen


def test_an_action_sees_the_token_of_the_lease_it_runs_under(make_topia: Any, dsn: str) -> None:
    topia = make_topia()
    seen = _recording(topia)
    topia.create_job("q", "fenced", {"n": 1})
    topia.create_job("q", "fenced", {"n": 2})
    with topia.worker(concurrency=1):
        wait_for(lambda: len(seen) == 2, timeout=10, what="two jobs")
    (_, first, live1), (_, second, live2) = seen
    assert first is not None and first == live1
    assert second == live2
    # A later holder of the queue: a lease taken after the first one ran out.
    with psycopg.connect(dsn, autocommit=True) as conn:
        topia.create_job("q", "other")
        taken = take_lease(conn, topia.scope, "someone-else")
        assert taken.lease is not None and taken.lease.token > max(first, second)
        expire(conn, topia.scope)
    topia.create_job("q2", "fenced", {"n": 3})
    drain(topia)  # drain runs in this thread, under leases of its own
    assert [n for n, _, _ in seen] == [1, 2, 3]
    later = seen[2][1]
    assert later is not None and later > taken.lease.token


def test_the_fence_is_not_stored_nor_shown(topia: Queuetopia) -> None:
    seen = _recording(topia)
    job = topia.create_job("q", "fenced", {"n": 1})
    drain(topia)
    assert seen and seen[0][1] is not None
    done = topia.get_job(job.id)
    assert done is not None and done.fence is None
    assert "fence" not in done.model_dump()
    assert "fence" not in json.loads(done.model_dump_json())
