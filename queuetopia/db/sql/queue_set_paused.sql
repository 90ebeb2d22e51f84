-- Pause or resume one queue (creating its row: a queue may be paused before its
-- first job), recording who did it. Returns the queue if it changed.
-- The operator's record (operator_log, the same in job_retry.sql, job_cancel.sql and
-- queue_set_paused.sql, whose target is `t`): one entry appended, the last 50 kept.
INSERT INTO queuetopia_queues AS t (scope, queue, paused)
VALUES (%(scope)s, %(queue)s, %(paused)s)
ON CONFLICT (scope, queue) DO UPDATE
   SET paused = EXCLUDED.paused,
       ready_at = CASE WHEN EXCLUDED.paused THEN t.ready_at ELSE least(t.ready_at, now()) END,
       operator_log = (CASE WHEN jsonb_array_length(t.operator_log) >= 50
                            THEN t.operator_log - 0 ELSE t.operator_log END)
                      || jsonb_build_array(jsonb_build_object(
                             'action', %(verb)s::text, 'by', %(by)s::text, 'at', now(),
                             'reason', %(reason)s::text))
 WHERE t.paused IS DISTINCT FROM EXCLUDED.paused
RETURNING t.queue
