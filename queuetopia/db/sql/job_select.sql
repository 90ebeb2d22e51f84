-- The jobs an operator selection names (docs/operations.md): queue glob (as a LIKE
-- pattern), states, action, changed since; in queue order, at most `limit`.
-- The job columns are written out as queuetopia/db/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
SELECT id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
       timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
       failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
       unique_key, depends_on, nullif(attempt_log, '[]') AS attempt_log,
       nullif(operator_log, '[]') AS operator_log
  FROM queuetopia_jobs
 WHERE scope = %(scope)s
   AND (%(pattern)s::text IS NULL OR queue LIKE %(pattern)s)
   AND state = ANY(%(states)s::text[])
   AND (%(action)s::text IS NULL OR action = %(action)s)
   AND (%(since)s::timestamptz IS NULL OR updated_at >= %(since)s)
   AND (%(since_secs)s::float8 IS NULL
        OR updated_at >= now() - make_interval(secs => %(since_secs)s))
 ORDER BY queue, scheduled_at, seq
 LIMIT %(limit)s
