-- Operator cancel of the jobs `ids`: each leaves its line, its queue moves on. A
-- running job keeps running until its worker stops it: the request (who, when, why)
-- waits on its row for the step that records its attempt (docs/flow-control.md).
-- The operator's record (operator_log, the same in job_retry.sql, job_cancel.sql and
-- queue_set_paused.sql, whose target is `t`): one entry appended, the last 50 kept.
-- The job columns are written out as queuetopia/db/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
UPDATE queuetopia_jobs t
   SET state = CASE WHEN t.state = 'running' THEN t.state ELSE 'cancelled' END,
       done_at = CASE WHEN t.state = 'running' THEN t.done_at ELSE now() END,
       updated_at = now(),
       error = CASE WHEN t.state = 'running' THEN t.error
                    ELSE 'cancelled: ' || %(reason)s || coalesce(E'\nlast error: ' || error, '')
               END,
       cancel_request = CASE WHEN t.state = 'running' THEN coalesce(t.cancel_request,
                            jsonb_build_object('by', %(by)s::text, 'at', now(),
                                               'reason', %(reason)s::text)) END,
       operator_log = (CASE WHEN jsonb_array_length(t.operator_log) >= 50
                            THEN t.operator_log - 0 ELSE t.operator_log END)
                      || jsonb_build_array(jsonb_build_object(
                             'action', %(verb)s::text, 'by', %(by)s::text, 'at', now(),
                             'reason', %(reason)s::text))
 WHERE scope = %(scope)s AND id = ANY(%(ids)s::bigint[]) AND state IN ('pending', 'failed', 'running')
RETURNING id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
          timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
          failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
          unique_key, depends_on, nullif(attempt_log, '[]') AS attempt_log,
          nullif(operator_log, '[]') AS operator_log
