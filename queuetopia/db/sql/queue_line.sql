-- A read for the dashboard (docs/dashboard.md).
-- A queue's line in the order it runs, head first, paged: walks the queuetopia_jobs_line
-- index, never the queue's finished jobs. No locks.
-- The job columns are written out as queuetopia/db/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
SELECT id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
       timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
       failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
       unique_key, depends_on, nullif(attempt_log, '[]') AS attempt_log,
       nullif(operator_log, '[]') AS operator_log
  FROM queuetopia_jobs
 WHERE scope = %(scope)s AND queue = %(queue)s AND in_line
 ORDER BY scheduled_at, seq
 LIMIT %(limit)s OFFSET %(offset)s
