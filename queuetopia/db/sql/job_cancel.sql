-- Operator cancel of the jobs `ids`: each leaves its line, its queue moves on.
-- Running jobs are refused.
-- The operator's record (operator_log, the same in job_retry.sql, job_cancel.sql and
-- queue_set_paused.sql, whose target is `t`): one entry appended, the last 50 kept.
-- The job columns are written out as queuetopia/db/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
UPDATE queuetopia_jobs t
   SET state = 'cancelled', done_at = now(), updated_at = now(),
       error = 'cancelled: ' || %(reason)s || coalesce(E'\nlast error: ' || error, ''),
       operator_log = (CASE WHEN jsonb_array_length(t.operator_log) >= 50
                            THEN t.operator_log - 0 ELSE t.operator_log END)
                      || jsonb_build_array(jsonb_build_object(
                             'action', %(verb)s::text, 'by', %(by)s::text, 'at', now(),
                             'reason', %(reason)s::text))
 WHERE scope = %(scope)s AND id = ANY(%(ids)s::bigint[]) AND state IN ('pending', 'failed')
RETURNING id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
          timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
          failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
          unique_key, nullif(attempt_log, '[]') AS attempt_log,
          nullif(operator_log, '[]') AS operator_log
