-- Enqueue jobs for any number of queues and actions, in one round trip: the one
-- statement behind every enqueue (docs/enqueue.md). job_insert_many.sql and
-- job_insert_uniform.sql differ only in their CTE `input`; the rest is the same.
-- - Commit order (docs/guarantees.md, rule 1): the transaction-scoped advisory lock of
--   each queue of the call, taken in key order so two bulk producers never deadlock,
--   held until the caller's transaction commits: a second producer of the same queue
--   waits here. Only then are the jobs numbered (seq, drawn from queuetopia_seq in
--   input order) and, for jobs due now, timed (`clock_timestamp()`), so
--   (scheduled_at, seq) follows commit order. Other queues never contend. No shared
--   row is written for this (docs/design.md, "Order equals commit order").
-- - The queue row is created by the first job of a queue, and its ready_at hint is
--   written only when this call makes the queue due sooner: a queue that is busy
--   already, or held by a worker, is not written at all.
-- - A job scheduled before the moment it joins its queue (a time in the past) may
--   land behind a worker's floor: it counts a rewind on the queue row, with the
--   earliest position rewound to (docs/design.md, "The floor").
-- - A job whose unique_key is held by a job still in line in its queue is not
--   written (the partial unique index decides, race-safe); `position` tells the
--   caller which jobs were written.
-- - One notification for the whole call (`wake`: the queue, the queues as a JSON
--   list, or '' for "look at every queue"), delivered when the caller commits.
-- - Only the columns the database makes (and params, which jsonb may normalise: a
--   float like 7.2e16 comes back as an integer) are returned: the caller knows the
--   rest, and reading back 1,000 whole rows cost more than writing them.
-- This input: a batch whose jobs differ only in their params (a `.delay`, a
-- `delay_many`): one value for each other column, not an array of copies. psycopg
-- dumps arrays element by element in Python: ten of them cost a one-job enqueue as
-- much as all the rest of it, and a thousand-job batch a third of its CPU. The params
-- come as one JSON array, one element per job, in the caller's order. Jobs that wait
-- for other jobs go through job_insert_many.sql: here, none does.
WITH input AS (
    SELECT %(queues)s::text AS in_queue, %(actions)s::text AS in_action, p.in_params,
           %(ats)s::timestamptz AS in_at, %(delays)s::float8 AS in_delay,
           %(timeouts)s::float8 AS in_timeout, %(max_attempts)s::int AS in_max_attempts,
           %(max_backoffs)s::float8 AS in_max_backoff,
           %(on_exhausted)s::text AS in_on_exhausted, %(unique_keys)s::text AS in_unique_key,
           NULL::text AS in_depends_on, p.in_ord
      FROM jsonb_array_elements(%(params)s::jsonb) WITH ORDINALITY AS p(in_params, in_ord)
), locked AS MATERIALIZED (
    SELECT count(pg_advisory_xact_lock(1364479824, lock_key)) AS locks
      FROM (SELECT DISTINCT queuetopia_lock_key(%(scope)s::text, in_queue) AS lock_key
              FROM input ORDER BY 1) AS keys
), numbered AS MATERIALIZED (
    SELECT i.*, nextval('queuetopia_seq') AS new_seq,
           clock_timestamp() AS joined_at,
           row_number() OVER (PARTITION BY in_queue ORDER BY in_ord) AS in_position
      FROM input i CROSS JOIN locked
     ORDER BY in_ord
), timed AS (
    SELECT numbered.*, coalesce(in_at, joined_at + make_interval(secs => in_delay)) AS new_at
      FROM numbered
), per_queue AS (
    SELECT in_queue AS pq_queue, min(new_at) AS pq_ready FROM timed GROUP BY in_queue
), made AS (
    INSERT INTO queuetopia_queues (scope, queue, ready_at)
    SELECT %(scope)s, pq_queue, pq_ready FROM per_queue ORDER BY pq_queue
    ON CONFLICT (scope, queue) DO NOTHING
    RETURNING queue
), ins AS (
    INSERT INTO queuetopia_jobs (scope, queue, seq, action, params, on_exhausted,
                                 max_attempts, timeout, max_backoff, meta, scheduled_at,
                                 unique_key, depends_on)
    SELECT %(scope)s, in_queue, new_seq, in_action, in_params, in_on_exhausted,
           in_max_attempts, in_timeout, in_max_backoff, %(meta)s, new_at, in_unique_key,
           in_depends_on::bigint[]
      FROM timed
     ORDER BY in_ord
    ON CONFLICT (scope, queue, unique_key) WHERE unique_key IS NOT NULL AND in_line
    DO NOTHING
    RETURNING id, queue, seq, params, scheduled_at, inserted_at, updated_at
), behind AS (
    SELECT DISTINCT ON (queue) queue AS bq, scheduled_at AS b_at, seq AS b_seq
      FROM ins JOIN timed ON new_seq = seq
     WHERE new_at < joined_at
     ORDER BY queue, scheduled_at, seq
), touched AS (
    -- One update of each existing queue row this call concerns, for both of its
    -- writes: two data-modifying CTEs updating one row in one statement keep only one
    -- of the changes, and a job scheduled in the past then left its queue not due.
    -- - ready_at, lowered when this call makes the queue due sooner;
    -- - the earliest position rewound to since the lease holder last looked (it
    --   clears it then), when a job lands behind the floor (`behind`).
    -- Read from the row itself (q.*), as it is once this statement holds the queue's
    -- lock, not from the statement's snapshot, taken before the wait.
    UPDATE queuetopia_queues q
       SET ready_at = CASE WHEN q.ready_at IS NULL OR q.ready_at > pq_ready THEN pq_ready
                           ELSE q.ready_at END,
           rewinds = q.rewinds + CASE WHEN b_at IS NULL THEN 0 ELSE 1 END,
           rewind_at = CASE WHEN b_at IS NOT NULL
                                 AND (q.rewind_at IS NULL
                                      OR (b_at, b_seq) < (q.rewind_at, q.rewind_seq))
                            THEN b_at ELSE q.rewind_at END,
           rewind_seq = CASE WHEN b_at IS NOT NULL
                                  AND (q.rewind_at IS NULL
                                       OR (b_at, b_seq) < (q.rewind_at, q.rewind_seq))
                             THEN b_seq ELSE q.rewind_seq END
      FROM per_queue LEFT JOIN behind ON bq = pq_queue
     WHERE q.scope = %(scope)s AND q.queue = pq_queue
       AND (q.ready_at IS NULL OR q.ready_at > pq_ready OR b_at IS NOT NULL)
), wake AS (
    SELECT pg_notify('queuetopia', %(wake)s::text)
)
SELECT ins.*, in_position AS position
  FROM ins
  JOIN numbered ON new_seq = ins.seq
 CROSS JOIN wake
