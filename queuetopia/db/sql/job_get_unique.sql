-- The jobs in line that hold these (queue, unique_key) pairs: what an enqueue whose
-- job was not written (its key was taken) returns instead. A statement of its own,
-- after JOB_INSERT_MANY: that statement's snapshot may predate the holder's commit.
-- The job columns are written out as queuetopia/db/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
SELECT id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
       timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
       failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
       unique_key, depends_on, nullif(attempt_log, '[]') AS attempt_log,
       nullif(operator_log, '[]') AS operator_log
  FROM queuetopia_jobs
 WHERE scope = %(scope)s AND unique_key IS NOT NULL AND in_line
   AND (queue, unique_key) IN (
       SELECT * FROM unnest(%(queues)s::text[], %(unique_keys)s::text[]))
