-- For metrics: how many queues of the scope are blocked, and for how long the oldest
-- blocked head has been failing (the number to alert on). A head that snoozed waits
-- by its own choice: it is not counted (docs/flow-control.md).
SELECT count(*) AS blocked,
       coalesce(extract(epoch FROM max(now() - h.failing_since)), 0)::float8 AS oldest
  FROM queuetopia_queues q
 CROSS JOIN LATERAL (
       SELECT j.failing_since, j.state, j.attempt_log -> -1 ->> 'outcome' AS last
         FROM queuetopia_jobs j
        WHERE j.scope = q.scope AND j.queue = q.queue AND j.in_line
        ORDER BY j.scheduled_at, j.seq LIMIT 1) h
 WHERE q.scope = %(scope)s AND NOT q.paused
   AND ((h.failing_since IS NOT NULL AND h.last IS DISTINCT FROM 'snoozed')
        OR h.state = 'failed')
