-- Operator retry of the jobs `ids`: each is due now and keeps its place in line
-- (scheduled_at only moves if it was in the future). A failed job gets its attempts
-- back. A job whose unique_key another job in line holds now is left as it is (the
-- unique index would refuse it; docs/unique-jobs.md).
-- A retried job may go back into its line behind a worker's floor: like a producer,
-- the retry holds each queue's advisory lock (in key order) until it commits, and
-- counts a rewind on the queue row, with the earliest position it put a job back at
-- (docs/design.md, "The floor"; the same rewind as in job_insert_many.sql).
-- The operator's record (operator_log, the same in job_retry.sql, job_cancel.sql and
-- queue_set_paused.sql, whose target is `t`): one entry appended, the last 50 kept.
-- The job columns are written out as queuetopia/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
WITH target AS (
    SELECT DISTINCT queue AS target_queue FROM queuetopia_jobs
     WHERE scope = %(scope)s AND id = ANY(%(ids)s::bigint[])
       AND state IN ('pending', 'failed', 'cancelled')
), locked AS MATERIALIZED (
    SELECT count(pg_advisory_xact_lock(1364479824, lock_key)) AS locks
      FROM (SELECT DISTINCT queuetopia_lock_key(%(scope)s::text, target_queue) AS lock_key
              FROM target ORDER BY 1) AS keys
), retried AS (
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
      FROM locked
     WHERE scope = %(scope)s AND id = ANY(%(ids)s::bigint[])
       AND state IN ('pending', 'failed', 'cancelled')
       AND (unique_key IS NULL OR in_line OR NOT EXISTS (
            SELECT 1 FROM queuetopia_jobs twin
             WHERE twin.scope = t.scope AND twin.queue = t.queue
               AND twin.unique_key = t.unique_key AND twin.in_line))
    RETURNING id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
              timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
              failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
              unique_key, depends_on, nullif(attempt_log, '[]') AS attempt_log,
              nullif(operator_log, '[]') AS operator_log
), behind AS (
    SELECT DISTINCT ON (queue) queue AS bq, scheduled_at AS b_at, seq AS b_seq
      FROM retried
     ORDER BY queue, scheduled_at, seq
), rewound AS (
    -- The earliest position rewound to since the lease holder last looked (it clears
    -- it then), read from the row itself (q.*), as it is once this statement holds
    -- the queue's lock, not from the statement's snapshot, taken before the wait.
    -- (b_at is never NULL here: the same expressions as job_insert_many.sql's.)
    UPDATE queuetopia_queues q
       SET rewinds = q.rewinds + CASE WHEN b_at IS NULL THEN 0 ELSE 1 END,
           rewind_at = CASE WHEN b_at IS NOT NULL
                                 AND (q.rewind_at IS NULL
                                      OR (b_at, b_seq) < (q.rewind_at, q.rewind_seq))
                            THEN b_at ELSE q.rewind_at END,
           rewind_seq = CASE WHEN b_at IS NOT NULL
                                  AND (q.rewind_at IS NULL
                                       OR (b_at, b_seq) < (q.rewind_at, q.rewind_seq))
                             THEN b_seq ELSE q.rewind_seq END
      FROM behind
     WHERE q.scope = %(scope)s AND q.queue = bq
)
SELECT retried.* FROM retried
