-- Enqueue jobs for any number of queues and actions, in one round trip: the one
-- statement behind every enqueue (docs/enqueue.md). job_insert_many.sql and
-- job_insert_uniform.sql differ only in their CTE `input`; the rest is the same.
-- - Locks: the queue rows are upserted once per queue (an upsert cannot touch a row
--   twice, so the jobs are counted per queue first), in queue-name order, so two bulk
--   producers never deadlock. Each row lock holds until the caller's transaction
--   commits: a second producer of the same queue waits here, which makes `seq` (and,
--   for jobs due now, `scheduled_at`, read from the clock after the lock) follow
--   commit order (docs/guarantees.md). Other queues never contend.
-- - seq: each queue's block of numbers is taken at once; a job's place in its block
--   is its place in the input among the jobs of its queue.
-- - A job whose unique_key is held by a job still in line in its queue is not
--   written (the partial unique index decides, race-safe); `position` tells the
--   caller which jobs were written.
-- - ready_at is only lowered: a new job can make a queue due sooner, never later.
-- - One notification for the whole call (`wake`: the queue, or '' for "look at every
--   queue" when the call spans several), delivered when the caller commits.
-- - Only the columns the database makes (and params, which jsonb may normalise: a
--   float like 7.2e16 comes back as an integer) are returned: the caller knows the
--   rest, and reading back 1,000 whole rows cost more than writing them.
-- This input: a batch whose jobs differ only in their params (a `.delay`, a
-- `delay_many`): one value for each other column, not an array of copies. psycopg
-- dumps arrays element by element in Python: ten of them cost a one-job enqueue as
-- much as all the rest of it, and a thousand-job batch a third of its CPU. The params
-- come as one JSON array, one element per job, in the caller's order.
WITH input AS (
    SELECT %(queues)s::text AS in_queue, %(actions)s::text AS in_action, p.in_params,
           %(ats)s::timestamptz AS in_at, %(delays)s::float8 AS in_delay,
           %(timeouts)s::float8 AS in_timeout, %(max_attempts)s::int AS in_max_attempts,
           %(max_backoffs)s::float8 AS in_max_backoff,
           %(on_exhausted)s::text AS in_on_exhausted, %(unique_keys)s::text AS in_unique_key,
           p.in_ord
      FROM jsonb_array_elements(%(params)s::jsonb) WITH ORDINALITY AS p(in_params, in_ord)
), per_queue AS (
    SELECT in_queue AS pq_queue, count(*) AS pq_count,
           min(coalesce(in_at, clock_timestamp() + make_interval(secs => in_delay)))
               AS pq_ready
      FROM input GROUP BY in_queue
), q AS (
    INSERT INTO queuetopia_queues AS q (scope, queue, last_seq, ready_at)
    SELECT %(scope)s, pq_queue, pq_count, pq_ready FROM per_queue ORDER BY pq_queue
    ON CONFLICT (scope, queue) DO UPDATE
       SET last_seq = q.last_seq + EXCLUDED.last_seq,
           ready_at = least(q.ready_at, EXCLUDED.ready_at)
    RETURNING q.queue AS q_queue, q.last_seq AS q_last, clock_timestamp() AS joined_at
), numbered AS (
    SELECT i.*, q.*, q_last - pq_count AS base_seq,
           row_number() OVER (PARTITION BY in_queue ORDER BY in_ord) AS in_position
      FROM input i
      JOIN q ON q_queue = in_queue
      JOIN per_queue ON pq_queue = in_queue
), ins AS (
    INSERT INTO queuetopia_jobs (scope, queue, seq, action, params, on_exhausted,
                                 max_attempts, timeout, max_backoff, meta, scheduled_at,
                                 unique_key)
    SELECT %(scope)s, in_queue, base_seq + in_position, in_action, in_params,
           in_on_exhausted, in_max_attempts, in_timeout, in_max_backoff, %(meta)s,
           coalesce(in_at, joined_at + make_interval(secs => in_delay)), in_unique_key
      FROM numbered
     ORDER BY in_ord
    ON CONFLICT (scope, queue, unique_key) WHERE unique_key IS NOT NULL AND in_line
    DO NOTHING
    RETURNING id, queue, seq, params, scheduled_at, inserted_at, updated_at
), wake AS (
    SELECT pg_notify('queuetopia', json_build_array(%(scope)s::text, %(wake)s::text)::text)
)
SELECT ins.*, ins.seq - q_last + pq_count AS position
  FROM ins
  JOIN q ON q_queue = ins.queue
  JOIN per_queue ON pq_queue = ins.queue
 CROSS JOIN wake
