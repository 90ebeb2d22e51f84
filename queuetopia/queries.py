"""Every SQL statement queuetopia runs, named noun-first.

All values are bound parameters; no statement is ever built from user input.
Time is always the database's (`now()`, `clock_timestamp()`), never a worker's.
"""

from __future__ import annotations

from typing import LiteralString

CHANNEL = "queuetopia"

JOB_COLUMNS: LiteralString = """
    id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
    timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
    failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta"""

# The fence of every write made under a lease: our lease row, live, locked against a
# concurrent takeover until the write commits (rule 3.10). Writes add
# `AND EXISTS (SELECT 1 FROM lease)`.
LEASE_FENCE: LiteralString = """
WITH lease AS (
    SELECT 1 FROM queuetopia_leases
     WHERE scope = %(scope)s AND queue = %(queue)s AND lease_id = %(lease_id)s
       AND locked_until > now()
       FOR UPDATE
)"""

# Start an attempt of the job in CTE `head` if it is pending and due and its queue is
# not paused: attempts are counted here, when the attempt starts. Callers add the fence.
# `j.id = (SELECT ...)` leaves the planner only the primary key: a cached generic plan
# must never find the job by scanning an index of pending jobs.
HEAD_CLAIM: LiteralString = """
    UPDATE queuetopia_jobs j
       SET state = 'running', attempts = j.attempts + 1, attempted_at = now(),
           attempted_by = %(node)s, lease_id = %(lease_id)s, next_attempt_at = NULL,
           updated_at = now()
     WHERE j.id = (SELECT head_id FROM head) AND j.state = 'pending'
       AND j.scheduled_at <= now() AND coalesce(j.next_attempt_at, j.scheduled_at) <= now()
       AND NOT EXISTS (SELECT 1 FROM queuetopia_queues q
                        WHERE q.scope = %(scope)s AND q.queue = %(queue)s AND q.paused)
"""

# Enqueue a batch of jobs into one queue, in one round trip.
# Locks: upserting the queue row takes its row lock until the caller's transaction
# commits, so a second producer of the same queue waits here. That is what makes
# `seq` (and, for jobs due now, `scheduled_at`, read from the clock after the lock)
# follow commit order (rule 3.1). Other queues never contend.
# ready_at is only lowered: a new job can make the queue due sooner, never later.
# The notification is delivered when the caller commits, and not at all on rollback.
JOB_INSERT: LiteralString = (
    """
WITH q AS (
    INSERT INTO queuetopia_queues AS q (scope, queue, last_seq, ready_at)
    VALUES (%(scope)s, %(queue)s, %(count)s,
            coalesce(%(at)s::timestamptz,
                     clock_timestamp() + make_interval(secs => %(delay)s)))
    ON CONFLICT (scope, queue) DO UPDATE
       SET last_seq = q.last_seq + EXCLUDED.last_seq,
           ready_at = least(q.ready_at,
                            coalesce(%(at)s::timestamptz,
                                     clock_timestamp() + make_interval(secs => %(delay)s)))
    RETURNING q.last_seq - %(count)s AS base_seq, clock_timestamp() AS joined_at
), ins AS (
    INSERT INTO queuetopia_jobs (scope, queue, seq, action, params, on_exhausted,
                                 max_attempts, timeout, max_backoff, meta, scheduled_at)
    SELECT %(scope)s, %(queue)s, q.base_seq + p.ord, %(action)s, p.params,
           %(on_exhausted)s, %(max_attempts)s, %(timeout)s, %(max_backoff)s, %(meta)s,
           coalesce(%(at)s::timestamptz, q.joined_at + make_interval(secs => %(delay)s))
      FROM q, unnest(%(params)s::jsonb[]) WITH ORDINALITY AS p(params, ord)
    RETURNING"""
    + JOB_COLUMNS
    + """
), wake AS (
    SELECT pg_notify('queuetopia', json_build_array(%(scope)s::text, %(queue)s::text)::text)
)
SELECT ins.* FROM ins, wake ORDER BY ins.seq
"""
)

# Wake every worker of a scope (an empty queue name means "look at everything").
SCOPE_NOTIFY: LiteralString = """
SELECT pg_notify('queuetopia', json_build_array(%(scope)s::text, %(queue)s::text)::text)
"""

# Take leases on up to `limit` due queues of a scope, longest waiting first.
# Candidates come from the ready_at index, never from a scan of pending jobs. A queue
# whose lease is live is skipped; an expired lease is taken over (the lost worker's
# running head is then recovered by the claim). Two workers racing for one queue
# meet on the lease primary key: the second sees a live lease and gets nothing.
# `candidates` tells whether more queues were due than were taken (then the worker
# makes its runners take turns). `skip` lists queues this worker found not ready but
# could not correct (a producer held the queue row), so it does not spin on them.
LEASE_ACQUIRE: LiteralString = """
WITH candidate AS (
    SELECT q.scope, q.queue
      FROM queuetopia_queues q
     WHERE q.scope = %(scope)s
       AND q.ready_at <= now()
       AND NOT q.paused
       AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[]))
       AND q.queue <> ALL(%(skip)s::text[])
       AND NOT EXISTS (
           SELECT 1 FROM queuetopia_leases l
            WHERE l.scope = q.scope AND l.queue = q.queue AND l.locked_until > now())
     ORDER BY q.ready_at
     LIMIT %(limit)s + 1
)
INSERT INTO queuetopia_leases AS l (scope, queue, lease_id, token, owner, acquired_at,
                                    locked_until)
SELECT scope, queue, gen_random_uuid(), nextval('queuetopia_fence'), %(owner)s, now(),
       now() + make_interval(secs => %(ttl)s)
  FROM (SELECT * FROM candidate LIMIT %(limit)s) AS taken
ON CONFLICT (scope, queue) DO UPDATE
   SET lease_id = EXCLUDED.lease_id, token = EXCLUDED.token, owner = EXCLUDED.owner,
       acquired_at = EXCLUDED.acquired_at, locked_until = EXCLUDED.locked_until
 WHERE l.locked_until <= now()
RETURNING l.queue, l.lease_id, l.token, (SELECT count(*) FROM candidate) AS candidates
"""

# Is any queue of the scope due and free? Tells a draining worker to yield its slot.
QUEUE_ANY_DUE: LiteralString = """
SELECT EXISTS (
    SELECT 1 FROM queuetopia_queues q
     WHERE q.scope = %(scope)s AND q.ready_at <= now() AND NOT q.paused
       AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[]))
       AND q.queue <> ALL(%(skip)s::text[])
       AND NOT EXISTS (
           SELECT 1 FROM queuetopia_leases l
            WHERE l.scope = q.scope AND l.queue = q.queue AND l.locked_until > now()))
"""

# Seconds until the worker should look again (NULL: nothing to wait for): when the
# earliest queue of the scope becomes due, or when another worker's lease on a due
# queue runs out (a worker that died stops renewing it: its queue is then recovered
# after lock_ttl, not lock_ttl plus a poll).
QUEUE_NEXT_DUE: LiteralString = """
SELECT extract(epoch FROM least(
    (SELECT min(q.ready_at) FROM queuetopia_queues q
      WHERE q.scope = %(scope)s AND q.ready_at > now() AND NOT q.paused
        AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[]))),
    (SELECT min(l.locked_until) FROM queuetopia_leases l
       JOIN queuetopia_queues q ON q.scope = l.scope AND q.queue = l.queue
      WHERE l.scope = %(scope)s AND l.owner <> %(owner)s AND l.locked_until > now()
        AND q.ready_at <= now() AND NOT q.paused
        AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[])))
) - now())::float8 AS seconds
"""

# Renew every lease this worker holds in one statement (the heartbeat).
# A queue missing from the result is lost: its lease expired or was taken over.
LEASE_RENEW: LiteralString = """
UPDATE queuetopia_leases l
   SET locked_until = now() + make_interval(secs => %(ttl)s)
  FROM unnest(%(queues)s::text[], %(lease_ids)s::uuid[]) AS h(queue, lease_id)
 WHERE l.scope = %(scope)s AND l.queue = h.queue AND l.lease_id = h.lease_id
   AND l.locked_until > now()
RETURNING l.queue
"""

# Give a queue back: drop the lease and correct the queue's ready_at hint
# (queuetopia_queue_refresh skips that if a producer holds the queue row).
LEASE_RELEASE: LiteralString = """
WITH gone AS (
    DELETE FROM queuetopia_leases
     WHERE scope = %(scope)s AND queue = %(queue)s AND lease_id = %(lease_id)s
    RETURNING 1
)
SELECT queuetopia_queue_refresh(%(scope)s, %(queue)s) AS refreshed,
       (SELECT count(*) FROM gone) AS released
"""

# Claim the head of a queue under a lease: the heart of the product.
# - The head is the first job still in line by (scheduled_at, seq), found by the
#   queuetopia_jobs_line index; only the head is ever considered (rules 3.1, 3.3).
#   SKIP LOCKED is never used here: it would hand out the second job.
# - A job of the queue left running by a lost worker is returned instead of the
#   head, even when it is not the head (an operator retried an earlier job while it
#   ran): it must be recovered first, or the queue would run two jobs at once.
# - It is claimed only if it is pending and due, the queue is not paused, and the
#   lease is ours and live. `FOR UPDATE` on the lease row serialises the claim
#   against a takeover, so a stale worker can never claim (rule 3.10).
# - attempts is counted here, when the attempt starts, so a job that kills its
#   worker still uses up its attempts.
# - The partial unique index on running jobs backs rule 3.2 up.
# The result has one row: the lease flag, plus either the claimed job
# (outcome 'claimed') or the unclaimed head as it was (outcome 'head'), so the
# worker can tell an empty queue from a lost worker's job or a job not yet due.
JOB_CLAIM_HEAD: LiteralString = (
    LEASE_FENCE
    + """, running AS (
    SELECT id AS head_id FROM queuetopia_jobs
     WHERE scope = %(scope)s AND queue = %(queue)s AND state = 'running'
), head AS (
    SELECT head_id FROM running
    UNION ALL
    (SELECT id FROM queuetopia_jobs
      WHERE scope = %(scope)s AND queue = %(queue)s AND in_line
        AND NOT EXISTS (SELECT 1 FROM running)
      ORDER BY scheduled_at, seq
      LIMIT 1)
), claimed AS ("""
    + HEAD_CLAIM
    + """       AND EXISTS (SELECT 1 FROM lease)
    RETURNING"""
    + JOB_COLUMNS
    + """
), found AS (
    SELECT 'claimed' AS outcome, """
    + JOB_COLUMNS
    + """ FROM claimed
    UNION ALL
    SELECT 'head' AS outcome, """
    + JOB_COLUMNS
    + """
      FROM queuetopia_jobs
     WHERE id = (SELECT head_id FROM head) AND NOT EXISTS (SELECT 1 FROM claimed)
)
SELECT EXISTS (SELECT 1 FROM lease) AS leased, found.*
  FROM (SELECT 1) AS one LEFT JOIN found ON true
"""
)

# Record the end of an attempt and, in the same statement, claim the queue's next head.
# The write is fenced by the lease (rule 3.10): it happens only if the lease is still
# ours and live (its row locked FOR UPDATE against a takeover) and the job still runs
# under `job_lease_id`. Used for success, failure, exhaustion, and for a lost worker's
# job recovered under a new lease (then `job_lease_id` is the dead lease's).
# When `claim_next` is true and the attempt was recorded, the next head is claimed as
# in JOB_CLAIM_HEAD: one round trip and one commit per job while a worker drains a
# queue. The recorded job is excluded from the head search, since this statement's
# snapshot still sees it running; `EXISTS (SELECT 1 FROM rec)` makes the record run
# before the claim, so the one-running-job index never sees two running jobs.
# Returns the recorded job (outcome 'recorded'), then the claimed one ('claimed');
# no rows when the fence rejected the write.
JOB_FINISH: LiteralString = (
    LEASE_FENCE
    + """, rec AS (
    UPDATE queuetopia_jobs
       SET state = %(state)s::text,
           done_at = CASE WHEN %(state)s::text IN ('done', 'failed') THEN now() END,
           result = %(result)s,
           error = coalesce(%(error)s, error),
           next_attempt_at = CASE WHEN %(state)s::text = 'pending'
                                  THEN now() + make_interval(secs => %(backoff)s) END,
           failing_since = CASE WHEN %(state)s::text = 'done' THEN NULL
                                ELSE coalesce(failing_since, now()) END,
           updated_at = now()
     WHERE id = %(id)s AND scope = %(scope)s AND queue = %(queue)s
       AND state = 'running' AND lease_id = %(job_lease_id)s
       AND EXISTS (SELECT 1 FROM lease)
    RETURNING"""
    + JOB_COLUMNS
    + """
), head AS (
    SELECT id AS head_id FROM queuetopia_jobs
     WHERE scope = %(scope)s AND queue = %(queue)s AND in_line AND id <> %(id)s
       AND %(claim_next)s
     ORDER BY scheduled_at, seq
     LIMIT 1
), claimed AS ("""
    + HEAD_CLAIM
    + """       AND EXISTS (SELECT 1 FROM rec)
    RETURNING"""
    + JOB_COLUMNS
    + """
)
SELECT 'recorded' AS outcome, rec.* FROM rec
UNION ALL
SELECT 'claimed' AS outcome, claimed.* FROM claimed
"""
)

# Append a note to the error of the attempt just recorded, fenced like JOB_FINISH.
JOB_NOTE_ERROR: LiteralString = (
    LEASE_FENCE
    + """
UPDATE queuetopia_jobs
   SET error = coalesce(error, '') || %(note)s, updated_at = now()
 WHERE id = %(id)s AND lease_id = %(lease_id)s AND EXISTS (SELECT 1 FROM lease)
"""
)

JOB_GET: LiteralString = (
    "SELECT" + JOB_COLUMNS + " FROM queuetopia_jobs WHERE scope = %(scope)s AND id = %(id)s"
)

JOB_LIST: LiteralString = (
    "SELECT"
    + JOB_COLUMNS
    + """
  FROM queuetopia_jobs
 WHERE scope = %(scope)s
   AND (%(queue)s::text IS NULL OR queue = %(queue)s)
   AND (%(action)s::text IS NULL OR action = %(action)s)
   AND (%(state)s::text IS NULL OR state = %(state)s)
   AND (%(pattern)s::text IS NULL OR action ILIKE %(pattern)s OR queue ILIKE %(pattern)s
        OR params::text ILIKE %(pattern)s OR error ILIKE %(pattern)s)
 ORDER BY id
 LIMIT %(limit)s OFFSET %(offset)s
"""
)

# Operator retry: the job is due now and keeps its place in line (scheduled_at only
# moves if it was in the future). A failed job gets its attempts back.
JOB_RETRY: LiteralString = (
    """
UPDATE queuetopia_jobs
   SET state = 'pending',
       attempts = CASE WHEN state = 'pending' THEN attempts ELSE 0 END,
       scheduled_at = least(scheduled_at, now()), next_attempt_at = NULL,
       done_at = NULL, updated_at = now()
 WHERE scope = %(scope)s AND id = %(id)s AND state IN ('pending', 'failed', 'cancelled')
RETURNING"""
    + JOB_COLUMNS
)

# Operator cancel: the job leaves its line, the queue moves on. Running jobs are refused.
JOB_CANCEL: LiteralString = (
    """
UPDATE queuetopia_jobs
   SET state = 'cancelled', done_at = now(), updated_at = now(),
       error = 'cancelled: ' || %(reason)s || coalesce(E'\\nlast error: ' || error, '')
 WHERE scope = %(scope)s AND id = %(id)s AND state IN ('pending', 'failed')
RETURNING"""
    + JOB_COLUMNS
)

# After an operator change, make the queue due now so a worker re-reads its head.
# Takes the queue row lock: an operator call may wait for an open enqueue.
QUEUE_TOUCH: LiteralString = """
UPDATE queuetopia_queues SET ready_at = least(ready_at, now())
 WHERE scope = %(scope)s AND queue = %(queue)s
"""

QUEUE_SET_PAUSED: LiteralString = """
INSERT INTO queuetopia_queues AS q (scope, queue, paused)
VALUES (%(scope)s, %(queue)s, %(paused)s)
ON CONFLICT (scope, queue) DO UPDATE
   SET paused = EXCLUDED.paused,
       ready_at = CASE WHEN EXCLUDED.paused THEN q.ready_at ELSE least(q.ready_at, now()) END
"""

# One row per queue of the scope with its head, lease and count of jobs in line.
QUEUE_LIST: LiteralString = """
SELECT q.queue, q.paused, now() AS db_now,
       EXISTS (SELECT 1 FROM queuetopia_jobs r
                WHERE r.scope = q.scope AND r.queue = q.queue AND r.state = 'running')
           AS has_running,
       (SELECT count(*) FROM queuetopia_jobs c
         WHERE c.scope = q.scope AND c.queue = q.queue AND c.in_line) AS pending,
       l.owner AS locked_by, l.locked_until,
       (SELECT to_jsonb(h) FROM queuetopia_jobs h
         WHERE h.scope = q.scope AND h.queue = q.queue AND h.in_line
         ORDER BY h.scheduled_at, h.seq LIMIT 1) AS head
  FROM queuetopia_queues q
  LEFT JOIN queuetopia_leases l
    ON l.scope = q.scope AND l.queue = q.queue AND l.locked_until > now()
 WHERE q.scope = %(scope)s
 ORDER BY q.queue
"""

# Only one worker of a scope prunes at a time; the lock ends with the transaction.
PRUNE_LOCK: LiteralString = """
SELECT pg_try_advisory_xact_lock(%(key)s, hashtext(%(scope)s)) AS locked
"""

# Delete finished jobs in small batches so no prune holds many locks or a long xmin.
JOB_PRUNE_BATCH: LiteralString = """
DELETE FROM queuetopia_jobs
 WHERE id IN (SELECT id FROM queuetopia_jobs
               WHERE scope = %(scope)s AND state IN ('done', 'cancelled')
                 AND done_at < now() - make_interval(secs => %(older_than)s)
               LIMIT %(batch)s)
"""

# Register a periodic job at its current tick (no backfill of ticks before it existed).
PERIODIC_REGISTER: LiteralString = """
INSERT INTO queuetopia_periodic (scope, name, last_tick)
VALUES (%(scope)s, %(name)s, %(tick)s)
ON CONFLICT (scope, name) DO NOTHING
"""

# Lock a periodic's row for the transaction that enqueues its due ticks; a worker that
# finds it locked leaves the work to the one holding it (exactly once per tick).
PERIODIC_LOCK: LiteralString = """
SELECT last_tick, now() AS db_now FROM queuetopia_periodic
 WHERE scope = %(scope)s AND name = %(name)s
   FOR UPDATE SKIP LOCKED
"""

PERIODIC_ADVANCE: LiteralString = """
UPDATE queuetopia_periodic SET last_tick = %(tick)s WHERE scope = %(scope)s AND name = %(name)s
"""

DB_NOW: LiteralString = "SELECT now() AS db_now"

# For metrics: how many queues of the scope are blocked, and for how long the oldest
# blocked head has been failing (the number to alert on).
QUEUE_BLOCKED_STATS: LiteralString = """
SELECT count(*) AS blocked,
       coalesce(extract(epoch FROM max(now() - h.failing_since)), 0)::float8 AS oldest
  FROM queuetopia_queues q
 CROSS JOIN LATERAL (
       SELECT j.failing_since, j.state FROM queuetopia_jobs j
        WHERE j.scope = q.scope AND j.queue = q.queue AND j.in_line
        ORDER BY j.scheduled_at, j.seq LIMIT 1) h
 WHERE q.scope = %(scope)s AND NOT q.paused
   AND (h.failing_since IS NOT NULL OR h.state = 'failed')
"""
