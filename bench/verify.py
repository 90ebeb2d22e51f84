"""Correctness checks: a fast wrong answer is a failure.

Two independent witnesses:
- the database: every job done exactly once (attempts = 1), per queue the jobs ran in
  seq order and never overlapped (each job's done_at <= the next job's
  attempted_at; both are the database's now() of the transactions that recorded
  them), and enqueue kept list order (params.i grows with seq);
- the workers' own record (bench/apps.py): each job id ran exactly once across all
  worker processes, and per queue the action runs are in seq order and do not
  overlap in wall-clock time.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import psycopg

from .procs import WorkerLog

MAX_LISTED = 5
DISORDER = """
SELECT queue, seq, i, prev_i FROM (
    SELECT queue, seq, (params->>'i')::int AS i,
           lag((params->>'i')::int) OVER (PARTITION BY queue ORDER BY seq) AS prev_i
      FROM queuetopia_jobs WHERE scope = %s) t
 WHERE prev_i IS NOT NULL AND i <= prev_i
"""


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, what: str, rows: list[Any] | None = None) -> None:
        if rows:
            what += ": " + "; ".join(str(r) for r in rows[:MAX_LISTED])
            if len(rows) > MAX_LISTED:
                what += f" (+{len(rows) - MAX_LISTED} more)"
        self.items.append(what)

    def __bool__(self) -> bool:
        return bool(self.items)


def check_enqueued(conn: psycopg.Connection[Any], scope: str, expected: int) -> list[str]:
    """After an enqueue run: the count, and per queue each seq once and list order kept
    (params.i grows with seq). Not that seq runs 1..n: rule 1 of docs/guarantees.md
    orders a queue by commit, and Engine v2 draws seq from one sequence for all queues
    (the queue rows' last_seq is no longer kept)."""
    p = Problems()
    row = conn.execute("SELECT count(*) FROM queuetopia_jobs WHERE scope = %s", [scope]).fetchone()
    if row is None or row[0] != expected:
        p.add(f"expected {expected} jobs, found {row[0] if row else None}")
    bad = conn.execute(
        """
        SELECT queue, count(*), count(DISTINCT seq)
          FROM queuetopia_jobs WHERE scope = %s GROUP BY queue
        HAVING count(DISTINCT seq) <> count(*)
        """,
        [scope],
    ).fetchall()
    if bad:
        p.add("a seq used twice in a queue", bad)
    disorder = conn.execute(DISORDER, [scope]).fetchall()
    if disorder:
        p.add("enqueue order not kept (params.i not increasing with seq)", disorder)
    return p.items


def check_ran(
    conn: psycopg.Connection[Any],
    scope: str,
    expected: int,
    logs: list[WorkerLog] | None,
    *,
    complete: bool = True,
    counted: int | None = None,
    killed: bool = False,
    lost: list[str] | None = None,
    notes: list[str] | None = None,
) -> list[str]:
    """After a drain. `complete`: every job must be done; otherwise (a window of a big
    queue set) the done jobs of each queue must be a prefix of it. `logs`: the
    workers' records (None: only `counted`, the sum of their counters, is known).
    `killed`: a worker was killed, so its running jobs stay `running` (until their
    lease expires) and it left no record; only the database is checked.
    `lost`: the run lost database connections (the server refused them). Then the
    rules allow a job whose outcome could not be written to stay `running` until its
    lease expires and to run again (rule 9 of docs/guarantees.md): those findings go
    to this list instead of being failures. Order and overlap are checked all the
    same: a job run again must still come before its queue's next job.
    `notes`: where the database times' small inversions go (see _check_db_times)."""
    p = Problems()
    again = Problems() if lost is not None else p
    rows = conn.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE state = 'done'),
               count(*) FILTER (WHERE state = 'running'),
               count(*) FILTER (WHERE state NOT IN ('done', 'pending', 'running')),
               count(*) FILTER (WHERE state = 'done' AND attempts <> 1),
               count(*) FILTER (WHERE state = 'pending' AND attempts <> 0)
          FROM queuetopia_jobs WHERE scope = %s
        """,
        [scope],
    ).fetchone()
    assert rows is not None
    total, done, running, other, reattempted, retried = rows
    if total != expected:
        p.add(f"expected {expected} jobs in the table, found {total}")
    if complete and done != expected:
        p.add(f"{expected - done} of {expected} jobs not done")
    if running and not killed:
        again.add(f"{running} jobs left running after the workers stopped")
    if other:
        p.add(f"{other} jobs failed or cancelled")
    if reattempted or retried:
        again.add(f"{reattempted + retried} jobs attempted more than once or left with attempts")

    # the small-inversion allowance needs the workers' records to back it
    _check_db_times(conn, scope, p, notes if logs is not None and not killed else None)
    if not complete:
        gaps = conn.execute(
            """
            SELECT queue, max(seq) FILTER (WHERE state = 'done') AS last_done,
                   min(seq) FILTER (WHERE state <> 'done') AS first_pending
              FROM queuetopia_jobs WHERE scope = %s GROUP BY queue
            HAVING max(seq) FILTER (WHERE state = 'done')
                   > min(seq) FILTER (WHERE state <> 'done')
            """,
            [scope],
        ).fetchall()
        if gaps:
            p.add("a job ran before an earlier job of its queue", gaps)

    if not killed and logs is None:
        if counted is not None and counted != done:
            again.add(f"the actions counted {counted} runs, the database has {done} done jobs")
    elif not killed and logs is not None:
        _check_logs(conn, scope, logs, done, p, again)
    if lost is not None:
        lost += again.items
    return p.items


# A job's attempted_at and done_at are now() of the transactions that wrote them: the
# start of the transaction (at Bind), read before its snapshot (at Execute), and
# between the two come the plan (a cached plan invalidated by autovacuum's ANALYZE is
# planned again: milliseconds for the engine's big statements), waits for locks on the
# plan's relations, and the CPU scheduler. So a claim whose transaction started just
# before the previous job's outcome was written, and took its snapshot just after that
# commit, carries an attempted_at earlier than the previous done_at although it ran
# after it. Seen on the current engine under the snapshot workload's steady load on a
# loaded 2-core machine: 0.11 ms once in 144,000 jobs, 4.1 ms once in another run.
# The database cannot order two transactions finer than that; the workers' records
# (checked strictly in _check_logs) can. So an inversion under CLOCK_TOLERANCE that the
# workers' records back is a note; anything larger is a failure.
CLOCK_TOLERANCE = 0.02  # seconds
DB_TIMES = """
SELECT queue, seq, attempted_at, done_at, next_seq, next_attempted_at,
       extract(epoch FROM done_at - next_attempted_at)::float8 FROM (
    SELECT queue, seq, attempted_at, done_at,
           lead(seq) OVER w AS next_seq, lead(attempted_at) OVER w AS next_attempted_at
      FROM queuetopia_jobs
     WHERE scope = %s AND state = 'done'
    WINDOW w AS (PARTITION BY queue ORDER BY seq)) t
 WHERE attempted_at > done_at OR next_attempted_at < done_at
"""


def _check_db_times(
    conn: psycopg.Connection[Any], scope: str, p: Problems, notes: list[str] | None
) -> None:
    rows = conn.execute(DB_TIMES, [scope]).fetchall()
    small = [
        r for r in rows if r[2] <= r[3] and r[6] is not None and r[6] < CLOCK_TOLERANCE
    ] if notes is not None else []  # fmt: skip
    overlap = [r[:6] for r in rows if r not in small]
    if overlap:
        p.add("jobs of one queue overlapped or ran out of order (database times)", overlap)
    if small and notes is not None:
        notes.append(
            f"{len(small)} next attempted_at before the previous done_at by under "
            f"{CLOCK_TOLERANCE * 1000:g} ms (each is its transaction's now(), taken before "
            f"its snapshot; the workers saw no overlap): {[(r[0], r[1], r[4]) for r in small[:5]]}"
        )


def _check_logs(
    conn: psycopg.Connection[Any],
    scope: str,
    logs: list[WorkerLog],
    done: int,
    p: Problems,
    again: Problems,
) -> None:
    """Against the workers' records; `again` takes the re-runs (`p` unless allowed)."""
    runs: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for log in logs:
        for job_id, t0, t1 in zip(log.ids, log.t0, log.t1, strict=True):
            runs[job_id].append((t0, t1))
    twice = [(job_id, len(r)) for job_id, r in runs.items() if len(r) > 1]
    if twice:
        again.add("jobs ran more than once (worker records)", twice)
    ran_count = sum(len(r) for r in runs.values())
    if ran_count != done:
        again.add(f"the actions recorded {ran_count} runs, the database has {done} done jobs")
    db_jobs = conn.execute(
        "SELECT id, queue, seq FROM queuetopia_jobs WHERE scope = %s AND state = 'done'",
        [scope],
    ).fetchall()
    db_ids = {r[0] for r in db_jobs}
    missing = sorted(db_ids - runs.keys())
    extra = sorted(runs.keys() - db_ids)
    if missing:
        p.add("done in the database but never run by an action", missing)
    if extra:
        again.add("run by an action but not done in the database", extra)
    by_queue: dict[str, list[tuple[float, float, int, int]]] = defaultdict(list)
    for job_id, queue, seq in db_jobs:
        for t0, t1 in runs.get(job_id, []):
            by_queue[queue].append((t0, t1, seq, job_id))
    bad = []
    for queue, items in by_queue.items():
        items.sort()
        for prev, cur in itertools.pairwise(items):
            rerun = cur[3] == prev[3] and again is not p  # the same job again, allowed
            if (cur[2] <= prev[2] and not rerun) or cur[0] < prev[1]:
                bad.append((queue, prev[2], cur[2], round(cur[0] - prev[1], 6)))
    if bad:
        p.add("actions of one queue ran out of order or overlapped (worker records)", bad)


def queue_gaps(
    conn: psycopg.Connection[Any],
    scope: str,
    logs: list[WorkerLog],
    started_at: float | None = None,
    stall: float = 1.0,
) -> tuple[float, float, list[str]]:
    """Waiting, from the workers' records (worker clocks):
    - the longest wait between one job's end and the next job's start in the same
      queue (with more queues due than slots, a queue waits its turn);
    - the longest time in which no job started at all, from `started_at` (the
      enqueue commit, epoch seconds) to the last start: with jobs due, that is a
      missed wake-up (a line for each such pause over `stall` seconds).
    Neither is a correctness error; both show up as lost throughput."""
    where = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT id, queue, seq FROM queuetopia_jobs WHERE scope = %s AND state = 'done'",
            [scope],
        )
    }
    by_queue: dict[str, list[tuple[float, float, int, int]]] = defaultdict(list)
    starts: list[float] = [] if started_at is None else [started_at]
    for log in logs:
        for job_id, t0, t1 in zip(log.ids, log.t0, log.t1, strict=True):
            starts.append(t0)
            if job_id in where:
                queue, seq = where[job_id]
                by_queue[queue].append((t0, t1, seq, log.pid))
    longest = 0.0
    for items in by_queue.values():
        items.sort()
        for prev, cur in itertools.pairwise(items):
            longest = max(longest, cur[0] - prev[1])
    starts.sort()
    idle = 0.0
    stalls = []
    origin = starts[0] if starts else 0.0
    for prev_start, next_start in itertools.pairwise(starts):
        pause = next_start - prev_start
        idle = max(idle, pause)
        if pause > stall:
            stalls.append(
                f"no job started for {pause:.1f}s (from {prev_start - origin:.1f}s into the "
                "run) although jobs were due: a missed wake-up"
            )
    return longest, idle, stalls
