-- For metrics: how many queues of the scope are blocked, and for how long the oldest
-- blocked head has been failing (the number to alert on). A head that snoozed waits
-- by its own choice: it is not counted (docs/flow-control.md).
-- `rated`: the queues whose due head waits for a rate limit's budget (nothing to
-- count, and one probe, in a scope without limits).
SELECT count(*) AS blocked,
       coalesce(extract(epoch FROM max(now() - h.failing_since)), 0)::float8 AS oldest,
       (SELECT count(*) FROM queuetopia_queues r
         WHERE r.scope = %(scope)s AND NOT r.paused AND r.ready_at <= now()
           AND EXISTS (SELECT 1 FROM queuetopia_limits WHERE scope = %(scope)s)
           AND EXISTS (
               SELECT 1 FROM queuetopia_limits l
                 LEFT JOIN queuetopia_buckets b
                   ON b.scope = l.scope AND b.name = l.name
                  AND b.key = CASE WHEN l.shared THEN '' ELSE r.queue END
                WHERE l.scope = r.scope AND r.queue LIKE l.pattern
                  AND coalesce(least(l.burst, b.tokens + l.count / l.period
                                     * greatest(extract(epoch FROM now() - b.refilled_at), 0)),
                               l.burst) < 1)) AS rated
  FROM queuetopia_queues q
 CROSS JOIN LATERAL (
       SELECT j.failing_since, j.state, j.attempt_log -> -1 ->> 'outcome' AS last
         FROM queuetopia_jobs j
        WHERE j.scope = q.scope AND j.queue = q.queue AND j.in_line
        ORDER BY j.scheduled_at, j.seq LIMIT 1) h
 WHERE q.scope = %(scope)s AND NOT q.paused
   AND ((h.failing_since IS NOT NULL AND h.last IS DISTINCT FROM 'snoozed')
        OR h.state = 'failed')
