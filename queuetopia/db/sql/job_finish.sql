-- Record the ends of attempts and, in the same statement, claim each queue's next head:
-- a batch of outcomes from different queues, one commit for all (group commit; each
-- queue still has at most one job in flight, so the rules hold per queue).
-- - Every write is fenced by its own lease (docs/guarantees.md, rule 10): a row is
--   recorded only if its lease is still ours and live (the lease rows locked FOR
--   UPDATE, in queue order, against a takeover) and the job still runs under
--   `in_job_lease` (for a lost worker's job recovered under a new lease, that is the
--   dead lease's id).
-- - The record carries the lease that wrote it: a "worker lost" record replaces the
--   dead lease's id by the recovering lease's, so the stale worker, if it comes back,
--   can tell that its outcome was discarded, not committed with its reply lost.
-- - Where `in_claim_next` and the attempt was recorded, the queue's next head is
--   claimed as in JOB_CLAIM_HEAD: one round trip and one commit per batch while
--   workers drain queues. The head search excludes the recorded job, which this
--   statement's snapshot still sees running; it reads `rec`, so a queue's record is
--   written before its next head is claimed and the one-running-job index never sees
--   two running jobs in a queue.
-- The batch comes as one JSON array of records: psycopg dumps an array parameter
-- element by element in Python, and nine of them cost more than the rest of a
-- batch's client time together (docs/performance.md).
-- Returns one row per claimed job (or a single row of NULLs), each carrying
-- `recorded`, the ids of the jobs recorded: an id missing there was rejected by its
-- fence. Recorded jobs are not returned whole: after a success nobody reads them.
-- - State 'parked' (docs/blocking.md) is recorded as failed and out of line.
-- - Each attempt is appended to attempt_log (the last 20, with 2000 characters of each
--   error), except the only attempt of a job that never failed: its attempted_at,
--   attempted_by and done_at say it all, and the common case writes no more than
--   before.
-- The head claim (CTE `claimed`, the same in job_claim_head.sql and lease_acquire.sql;
-- tests/test_queries.py checks that): start an attempt of each job in CTE `head`
-- (head_id, head_queue, head_lease) if it is pending and due and its queue is not
-- paused: attempts are counted here, when the attempt starts.
-- `= ANY(ARRAY(...))` leaves the planner only primary keys: a cached generic plan must
-- never find the jobs by scanning an index of pending jobs, nor read a scope's queues.
-- The job columns are written out as queuetopia/db/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(batch)s::jsonb) AS batch(
           in_id bigint, in_queue text, in_lease uuid, in_job_lease uuid, in_state text,
           in_error text, in_result jsonb, in_backoff float8, in_claim_next bool)
), lease AS (
    SELECT l.queue AS leased_queue, l.lease_id AS leased_id
      FROM queuetopia_leases l JOIN input ON l.queue = in_queue AND l.lease_id = in_lease
     WHERE l.scope = %(scope)s AND l.queue = ANY(ARRAY(SELECT in_queue FROM input))
       AND l.locked_until > now()
     ORDER BY l.queue
       FOR UPDATE OF l
), rec AS (
    UPDATE queuetopia_jobs j
       SET state = CASE WHEN in_state = 'parked' THEN 'failed' ELSE in_state END,
           lease_id = in_lease,
           on_exhausted = CASE WHEN in_state = 'parked' THEN 'skip' ELSE j.on_exhausted END,
           done_at = CASE WHEN in_state IN ('done', 'failed', 'parked') THEN now() END,
           result = in_result,
           error = coalesce(in_error, j.error),
           next_attempt_at = CASE WHEN in_state = 'pending'
                                  THEN now() + make_interval(secs => in_backoff) END,
           failing_since = CASE WHEN in_state = 'done' THEN NULL
                                ELSE coalesce(j.failing_since, now()) END,
           attempt_log = CASE
               WHEN in_state = 'done' AND j.attempt_log = '[]' THEN j.attempt_log
               ELSE (CASE WHEN jsonb_array_length(j.attempt_log) >= 20
                          THEN j.attempt_log - 0 ELSE j.attempt_log END)
                    || jsonb_build_array(jsonb_build_object(
                           'attempt', j.attempts, 'started_at', j.attempted_at,
                           'ended_at', now(), 'node', j.attempted_by,
                           'outcome', CASE in_state WHEN 'pending' THEN 'retry'
                                                    ELSE in_state END,
                           'error', left(in_error, 2000)))
           END,
           updated_at = now()
      FROM input
     WHERE j.id = ANY(ARRAY(SELECT in_id FROM input)) AND j.id = in_id
       AND j.scope = %(scope)s AND j.queue = in_queue
       AND j.state = 'running' AND j.lease_id = in_job_lease
       AND (in_queue, in_lease) IN (SELECT leased_queue, leased_id FROM lease)
    RETURNING j.id, j.queue, j.state, in_lease, in_claim_next
), head AS (
    SELECT next.id AS head_id, rec.queue AS head_queue, rec.in_lease AS head_lease
      FROM rec CROSS JOIN LATERAL (
           SELECT n.id FROM queuetopia_jobs n
            WHERE n.scope = %(scope)s AND n.queue = rec.queue AND n.in_line AND n.id <> rec.id
            ORDER BY n.scheduled_at, n.seq
            LIMIT 1) AS next
     WHERE rec.in_claim_next AND rec.state = 'done'
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
    RETURNING id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
              timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
              failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
              unique_key, nullif(attempt_log, '[]') AS attempt_log,
              nullif(operator_log, '[]') AS operator_log
)
SELECT (SELECT array_agg(rec.id) FROM rec) AS recorded,
       id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
       timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
       failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
       unique_key, nullif(attempt_log, '[]') AS attempt_log,
       nullif(operator_log, '[]') AS operator_log
  FROM (SELECT 1) AS one LEFT JOIN claimed ON true
