-- One row per queue of the scope with its head, lease and count of jobs in line, and
-- its failed jobs (those the queue moved past, counted from the failed-jobs index).
-- `rated`: when the queue's next start fits every rate limit covering it, if one has
-- no token now, and the names of those limits; `awaits`: the jobs its head waits for
-- that are not done, [id, state] ('deleted' for one pruned) (docs/flow-control.md).
SELECT q.queue, q.paused, now() AS db_now,
       EXISTS (SELECT 1 FROM queuetopia_jobs r
                WHERE r.scope = q.scope AND r.queue = q.queue AND r.state = 'running')
           AS has_running,
       (SELECT count(*) FROM queuetopia_jobs c
         WHERE c.scope = q.scope AND c.queue = q.queue AND c.in_line) AS pending,
       l.owner AS locked_by, l.locked_until,
       hd.head,
       q.operator_log, coalesce(f.failed, 0) AS failed, f.oldest_failed_at,
       (SELECT jsonb_build_array(
                   max(now() + make_interval(secs => (1 - t.tokens) * l.period / l.count)),
                   string_agg(l.name, ', ' ORDER BY l.name))
          FROM queuetopia_limits l
          LEFT JOIN queuetopia_buckets b
            ON b.scope = l.scope AND b.name = l.name
           AND b.key = CASE WHEN l.shared THEN '' ELSE q.queue END
         CROSS JOIN LATERAL (
               SELECT coalesce(least(l.burst, b.tokens + l.count / l.period
                                     * greatest(extract(epoch FROM now() - b.refilled_at), 0)),
                               l.burst)) AS t(tokens)
         WHERE l.scope = q.scope AND q.queue LIKE l.pattern AND t.tokens < 1
        HAVING count(*) > 0) AS rated,
       (SELECT jsonb_agg(jsonb_build_array(dep, coalesce(d.state, 'deleted')) ORDER BY dep)
          FROM unnest(hd.head_deps) AS dep
          LEFT JOIN queuetopia_jobs d ON d.id = dep AND d.scope = q.scope
         WHERE d.state IS DISTINCT FROM 'done') AS awaits
  FROM queuetopia_queues q
  -- The head, looked up once for itself and for the jobs it waits for.
  LEFT JOIN LATERAL (
       SELECT to_jsonb(h) AS head, h.depends_on AS head_deps FROM queuetopia_jobs h
        WHERE h.scope = q.scope AND h.queue = q.queue AND h.in_line
        ORDER BY h.scheduled_at, h.seq LIMIT 1) AS hd ON true
  LEFT JOIN queuetopia_leases l
    ON l.scope = q.scope AND l.queue = q.queue AND l.locked_until > now()
  LEFT JOIN (SELECT f.queue AS failed_queue, count(*) AS failed,
                    min(f.done_at) AS oldest_failed_at
               FROM queuetopia_jobs f
              WHERE f.scope = %(scope)s AND f.state = 'failed'
              GROUP BY f.queue) AS f
    ON f.failed_queue = q.queue
 WHERE q.scope = %(scope)s AND (%(queue)s::text IS NULL OR q.queue = %(queue)s)
 ORDER BY q.queue
