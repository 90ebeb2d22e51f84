-- A read for the dashboard (docs/dashboard.md).
-- Jobs done and failed per minute over the last `minutes` minutes (one row per minute,
-- oldest first), for the whole scope or one queue. Computed from the jobs alone, so
-- the worker pays nothing for it:
-- - done: jobs whose state is done, by done_at (the queuetopia_jobs_finished index);
-- - failed: jobs whose latest attempt failed, at the minute it ended: exhausted jobs
--   by done_at (the queuetopia_jobs_failed index), and retrying heads by updated_at
--   (one index probe per queue, as only a head runs). A job that failed several times
--   counts once, at its latest failure, and not at all once it succeeds.
-- No locks.
WITH span AS (
    SELECT date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1) AS since
), minute AS (
    SELECT generate_series(since, date_trunc('minute', now()), interval '1 minute') AS at
      FROM span
), done AS (
    SELECT date_trunc('minute', done_at) AS at, count(*) AS n
      FROM queuetopia_jobs
     WHERE scope = %(scope)s AND state IN ('done', 'cancelled') AND state = 'done'
       AND done_at >= (SELECT since FROM span)
       AND (%(queue)s::text IS NULL OR queue = %(queue)s)
     GROUP BY 1
), exhausted AS (
    SELECT date_trunc('minute', done_at) AS at
      FROM queuetopia_jobs
     WHERE scope = %(scope)s AND state = 'failed' AND done_at >= (SELECT since FROM span)
       AND (%(queue)s::text IS NULL OR queue = %(queue)s)
), retrying AS (
    SELECT date_trunc('minute', h.updated_at) AS at
      FROM queuetopia_queues q
     CROSS JOIN LATERAL (
           SELECT j.updated_at, j.state, j.next_attempt_at FROM queuetopia_jobs j
            WHERE j.scope = q.scope AND j.queue = q.queue AND j.in_line
            ORDER BY j.scheduled_at, j.seq LIMIT 1) h
     WHERE q.scope = %(scope)s AND (%(queue)s::text IS NULL OR q.queue = %(queue)s)
       AND h.state = 'pending' AND h.next_attempt_at IS NOT NULL
       AND h.updated_at >= (SELECT since FROM span)
), failed AS (
    SELECT at, count(*) AS n FROM (SELECT at FROM exhausted UNION ALL SELECT at FROM retrying) f
     GROUP BY 1
)
SELECT minute.at AS minute, coalesce(done.n, 0) AS done, coalesce(failed.n, 0) AS failed
  FROM minute
  LEFT JOIN done ON done.at = minute.at
  LEFT JOIN failed ON failed.at = minute.at
 ORDER BY minute.at
