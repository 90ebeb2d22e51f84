-- Claim the head of a queue under a lease: the heart of the product.
-- - The head is the first job still in line by (scheduled_at, seq), found by the
--   queuetopia_jobs_line index; only the head is ever considered (docs/guarantees.md,
--   rules 1 and 3). SKIP LOCKED is never used here: it would hand out the second job.
-- - A job of the queue left running by a lost worker is returned instead of the
--   head, even when it is not the head (an operator retried an earlier job while it
--   ran): it must be recovered first, or the queue would run two jobs at once.
-- - It is claimed only if it is pending and due, the queue is not paused, and the
--   lease is ours and live. `FOR UPDATE` on the lease row serialises the claim
--   against a takeover, so a stale worker can never claim (docs/guarantees.md,
--   rule 10).
-- - attempts is counted here, when the attempt starts, so a job that kills its
--   worker still uses up its attempts.
-- - The partial unique index on running jobs backs rule 2 of docs/guarantees.md up.
-- The result has one row: the lease flag, plus either the claimed job
-- (outcome 'claimed') or the unclaimed head as it was (outcome 'head'), so the
-- worker can tell an empty queue from a lost worker's job or a job not yet due.
-- The fence of a write made under a lease (CTE `lease`, the same in job_claim_head.sql
-- and job_note_error.sql; job_finish.sql fences each row by its own lease): our lease
-- row, live, locked against a concurrent takeover until the write commits
-- (docs/guarantees.md, rule 10). The write adds `AND EXISTS (SELECT 1 FROM lease)`.
-- The head claim (CTE `claimed`, the same in lease_acquire.sql and job_finish.sql;
-- tests/test_queries.py checks that): start an attempt of each job in CTE `head`
-- (head_id, head_queue, head_lease) if it is pending and due and its queue is not
-- paused: attempts are counted here, when the attempt starts.
-- `= ANY(ARRAY(...))` leaves the planner only primary keys: a cached generic plan must
-- never find the jobs by scanning an index of pending jobs, nor read a scope's queues.
-- The job columns are written out as queuetopia/db/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
WITH lease AS (
    SELECT 1 FROM queuetopia_leases
     WHERE scope = %(scope)s AND queue = %(queue)s AND lease_id = %(lease_id)s
       AND locked_until > now()
       FOR UPDATE
), running AS (
    SELECT id AS head_id FROM queuetopia_jobs
     WHERE scope = %(scope)s AND queue = %(queue)s AND state = 'running'
), first AS (
    SELECT head_id FROM running
    UNION ALL
    (SELECT id FROM queuetopia_jobs
      WHERE scope = %(scope)s AND queue = %(queue)s AND in_line
        AND NOT EXISTS (SELECT 1 FROM running)
      ORDER BY scheduled_at, seq
      LIMIT 1)
), head AS (
    SELECT head_id, %(queue)s::text AS head_queue, %(lease_id)s::uuid AS head_lease
      FROM first
), claimed AS (
    UPDATE queuetopia_jobs j
       SET state = 'running', attempts = j.attempts + 1, attempted_at = now(),
           attempted_by = %(node)s, lease_id = head_lease, next_attempt_at = NULL,
           updated_at = now()
      FROM head
     WHERE j.id = ANY(ARRAY(SELECT head_id FROM head)) AND j.id = head_id
       AND j.state = 'pending'
       AND j.scheduled_at <= now() AND coalesce(j.next_attempt_at, j.scheduled_at) <= now()
       AND head_queue <> ALL(ARRAY(
           SELECT q.queue FROM queuetopia_queues q
            WHERE q.scope = %(scope)s AND q.queue = ANY(ARRAY(SELECT head_queue FROM head))
              AND q.paused))
       AND EXISTS (SELECT 1 FROM lease)
    RETURNING id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
              timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
              failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
              unique_key, nullif(attempt_log, '[]') AS attempt_log,
              nullif(operator_log, '[]') AS operator_log
), found AS (
    SELECT 'claimed' AS outcome,
           id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
           timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
           failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
           unique_key, nullif(attempt_log, '[]') AS attempt_log,
           nullif(operator_log, '[]') AS operator_log
      FROM claimed
    UNION ALL
    SELECT 'head' AS outcome,
           id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
           timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
           failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
           unique_key, nullif(attempt_log, '[]') AS attempt_log,
           nullif(operator_log, '[]') AS operator_log
      FROM queuetopia_jobs
     WHERE id = (SELECT head_id FROM head) AND NOT EXISTS (SELECT 1 FROM claimed)
)
SELECT EXISTS (SELECT 1 FROM lease) AS leased, found.*
  FROM (SELECT 1) AS one LEFT JOIN found ON true
