-- Operator retry of the jobs `ids`: each is due now and keeps its place in line
-- (scheduled_at only moves if it was in the future). A failed job gets its attempts
-- back. A job whose unique_key another job in line holds now is left as it is (the
-- unique index would refuse it; docs/unique-jobs.md).
-- The operator's record (operator_log, the same in job_retry.sql, job_cancel.sql and
-- queue_set_paused.sql, whose target is `t`): one entry appended, the last 50 kept.
-- The job columns are written out as queuetopia/db/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
UPDATE queuetopia_jobs t
   SET state = 'pending',
       attempts = CASE WHEN state = 'pending' THEN attempts ELSE 0 END,
       scheduled_at = least(scheduled_at, now()), next_attempt_at = NULL,
       done_at = NULL, updated_at = now(),
       operator_log = (CASE WHEN jsonb_array_length(t.operator_log) >= 50
                            THEN t.operator_log - 0 ELSE t.operator_log END)
                      || jsonb_build_array(jsonb_build_object(
                             'action', %(verb)s::text, 'by', %(by)s::text, 'at', now(),
                             'reason', %(reason)s::text))
 WHERE scope = %(scope)s AND id = ANY(%(ids)s::bigint[])
   AND state IN ('pending', 'failed', 'cancelled')
   AND (unique_key IS NULL OR in_line OR NOT EXISTS (
        SELECT 1 FROM queuetopia_jobs twin
         WHERE twin.scope = t.scope AND twin.queue = t.queue
           AND twin.unique_key = t.unique_key AND twin.in_line))
RETURNING id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
          timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
          failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
          unique_key, nullif(attempt_log, '[]') AS attempt_log,
          nullif(operator_log, '[]') AS operator_log
