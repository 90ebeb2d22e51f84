"""Upgrading a schema with work in it to the engine v2 schema (migration 0005,
docs/migrations.md): jobs pending, scheduled, retrying, failed and one running under
a live lease, written as the version 4 engine writes them (per-queue seq from the
queue row's last_seq, the lease row deleted on release), are all finished by a v2
worker in their order, the running one recovered as "worker lost" once its lease runs
out; jobs enqueued after the upgrade run after the old ones of their queue. The down
path gives version 4 back with the jobs intact."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from queuetopia import JobState, Queuetopia, migrations
from queuetopia.db import steps
from queuetopia.models import Found

from .helpers import wait_for
from .test_processes import expire, take_lease

SCOPE = "upgrade"
V4 = "\n".join(m.up for m in migrations.all_migrations() if m.version <= 4)
AFTER_V4 = [m.version for m in migrations.all_migrations() if m.version > 4]

# As the version 4 engine leaves them: the queue rows count their jobs (last_seq).
OLD_WORK = """
INSERT INTO queuetopia_queues (scope, queue, last_seq, ready_at) VALUES
    ('upgrade', 'plain', 3, now()), ('upgrade', 'busy', 2, now()),
    ('upgrade', 'stuck', 2, NULL), ('upgrade', 'later', 1, now() + interval '1 hour');
INSERT INTO queuetopia_jobs (scope, queue, seq, action, params, max_attempts, timeout,
                             max_backoff, scheduled_at, state, attempts, next_attempt_at,
                             on_exhausted, attempted_at, attempted_by, lease_id, done_at,
                             error) VALUES
    ('upgrade', 'plain', 1, 'note', '{"n": 1}', 20, 60, 86400, now() - interval '3 s',
     'pending', 1, now() - interval '1 s', 'skip', now() - interval '2 s', 'old:1', NULL,
     NULL, 'boom'),
    ('upgrade', 'plain', 2, 'note', '{"n": 2}', 20, 60, 86400, now() - interval '2 s',
     'pending', 0, NULL, 'skip', NULL, NULL, NULL, NULL, NULL),
    ('upgrade', 'plain', 3, 'note', '{"n": 3}', 20, 60, 86400, now() - interval '1 s',
     'pending', 0, NULL, 'skip', NULL, NULL, NULL, NULL, NULL),
    ('upgrade', 'busy', 1, 'note', '{"n": 4}', 20, 60, 86400, now() - interval '2 s',
     'running', 1, NULL, 'skip', now() - interval '1 s', 'old:1',
     '00000000-0000-0000-0000-0000000000aa', NULL, NULL),
    ('upgrade', 'busy', 2, 'note', '{"n": 5}', 20, 60, 86400, now() - interval '1 s',
     'pending', 0, NULL, 'skip', NULL, NULL, NULL, NULL, NULL),
    ('upgrade', 'stuck', 1, 'note', '{"n": 6}', 1, 60, 86400, now() - interval '2 s',
     'failed', 1, NULL, 'block', now() - interval '2 s', 'old:1', NULL, now(), 'boom'),
    ('upgrade', 'stuck', 2, 'note', '{"n": 7}', 20, 60, 86400, now() - interval '1 s',
     'pending', 0, NULL, 'skip', NULL, NULL, NULL, NULL, NULL),
    ('upgrade', 'later', 1, 'note', '{"n": 8}', 20, 60, 86400, now() + interval '1 hour',
     'pending', 0, NULL, 'skip', NULL, NULL, NULL, NULL, NULL);
INSERT INTO queuetopia_leases (scope, queue, lease_id, token, owner, acquired_at, locked_until)
    VALUES ('upgrade', 'busy', '00000000-0000-0000-0000-0000000000aa', 1, 'old:1:dead',
            now(), now() + interval '2 s');
"""


def version_4_with_work(fresh_database: Callable[[], str]) -> str:
    dsn = fresh_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(V4.encode())
        conn.execute(OLD_WORK.encode())
    return dsn


def test_a_v2_worker_finishes_the_work_of_a_version_4_schema_in_order(
    fresh_database: Callable[[], str],
) -> None:
    dsn = version_4_with_work(fresh_database)
    topia = Queuetopia(dsn=dsn, scope=SCOPE, lock_ttl=2.0, poll_interval=1.0)
    ran: list[int] = []

    @topia.action("note", backoff=lambda job: 0.0)
    def note(n: int) -> None:
        ran.append(n)

    assert topia.migrate() == AFTER_V4
    # Jobs enqueued after the upgrade go behind the old ones of their queue.
    note.delay("plain", n=9)
    note.delay("busy", n=10)
    with topia.worker(concurrency=4):
        wait_for(lambda: len(ran) == 7, timeout=30, what="the old and new jobs")
        assert ran.index(1) < ran.index(2) < ran.index(3) < ran.index(9)
        assert ran.index(4) < ran.index(5) < ran.index(10)  # 4 recovered after its lease
        assert 6 not in ran and 7 not in ran  # behind a failed head that blocks
        topia.retry_job(_id_of(topia, 6))
        wait_for(lambda: len(ran) == 9, timeout=30, what="the stuck queue, once retried")
    assert ran.index(6) < ran.index(7)
    recovered = _job(topia, 4)
    assert recovered.state == JobState.DONE and recovered.attempts == 2
    assert "worker lost" in (recovered.attempt_log[0].error or "")
    assert _job(topia, 8).state == JobState.PENDING  # still scheduled an hour from now
    topia.close()


def test_the_down_path_gives_version_4_back_with_the_jobs(
    fresh_database: Callable[[], str],
) -> None:
    dsn = version_4_with_work(fresh_database)
    with Queuetopia(dsn=dsn, scope=SCOPE) as topia:
        topia.migrate()
        topia.create_job("plain", "note", {"n": 9})
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(migrations.down_sql(to=4).encode())
        versions = [v for (v,) in conn.execute("SELECT version FROM queuetopia_versions")]
        assert sorted(versions) == [1, 2, 3, 4]
        count = conn.execute("SELECT count(*) FROM queuetopia_jobs").fetchone()
        assert count == (9,)
    with Queuetopia(dsn=dsn, scope=SCOPE) as topia:
        assert topia.migrate() == AFTER_V4  # and up again


def _job(topia: Queuetopia, n: int) -> Any:
    [job] = [j for j in topia.list_jobs(limit=100) if j.params["n"] == n]
    return job


def _id_of(topia: Queuetopia, n: int) -> int:
    return int(_job(topia, n).id)


# The first engine's lease take (its lease_acquire.sql, reduced to the lease's write),
# and its claim of the head: what a version 4 worker still running after the upgrade
# does (docs/migrations.md, "Rolling upgrade").
V1_TAKE = """
INSERT INTO queuetopia_leases AS l (scope, queue, lease_id, token, owner, acquired_at,
                                    locked_until)
VALUES (%(scope)s, 'q', gen_random_uuid(), nextval('queuetopia_fence'), 'v1-owner', now(),
        now() + interval '30 seconds')
ON CONFLICT (scope, queue) DO UPDATE
   SET lease_id = EXCLUDED.lease_id, token = EXCLUDED.token, owner = EXCLUDED.owner,
       acquired_at = EXCLUDED.acquired_at, locked_until = EXCLUDED.locked_until
 WHERE l.locked_until <= now()
RETURNING lease_id
"""
V1_CLAIM = """
UPDATE queuetopia_jobs SET state = 'running', attempts = attempts + 1, lease_id = %(lease)s,
       attempted_at = now(), attempted_by = 'v1-owner'
 WHERE id = %(id)s
"""


def test_a_v1_worker_that_dies_on_a_lease_a_v2_worker_released_is_recovered(
    topia: Queuetopia, dsn: str
) -> None:
    """A v2 worker releases queue q (its lease row stays, `released`); a v1 worker
    takes the row its own way and dies running q's head. The next v2 holder must see a
    takeover and recover that job as lost, not take the queue as cleanly released."""
    first = topia.create_job("q", "anything", {"n": 1})
    with psycopg.connect(dsn, autocommit=True) as conn:
        v2 = take_lease(conn, topia.scope, "v2-owner")
        assert v2.found is Found.CLAIMED
        conn.execute("UPDATE queuetopia_jobs SET state = 'done' WHERE id = %s", (first.id,))
        steps.lease_release(conn, scope=topia.scope, releases=[(v2.lease, None, 0)])
        job = topia.create_job("q", "anything", {"n": 2})
        row = conn.execute(V1_TAKE, {"scope": topia.scope}).fetchone()
        assert row is not None
        conn.execute(V1_CLAIM, {"lease": row[0], "id": job.id})
        released = conn.execute(
            "SELECT released FROM queuetopia_leases WHERE scope = %s", (topia.scope,)
        ).fetchone()
        assert released == (False,)  # a live lease of the first engine
        expire(conn, topia.scope)  # the v1 worker died
        successor = take_lease(conn, topia.scope, "v2-successor")
    assert successor.found is Found.ZOMBIE
    assert successor.job is not None and successor.job.id == job.id
