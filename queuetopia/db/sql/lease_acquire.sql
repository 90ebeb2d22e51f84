-- Take leases on up to `limit` due queues of a scope, longest waiting first, and with
-- `node` set, claim the head of each queue taken in the same statement (one round trip
-- from a notification to a running job).
-- Candidates come from the ready_at index, never from a scan of pending jobs. A queue
-- whose lease is live is skipped; an expired lease is taken over. A queue with a
-- running job (a lost worker's) is not claimed here: the worker recovers that job
-- first, with JOB_CLAIM_HEAD. Two workers racing for one queue meet on the lease
-- primary key: the second sees a live lease and gets nothing.
-- `candidates` tells whether more queues were due than were taken (then the worker
-- makes its runners take turns). `skip` lists queues this worker found not ready but
-- could not correct (a producer held the queue row), so it does not spin on them.
-- One row per lease, with the job columns of the claimed head or NULL; a single row
-- of NULLs when nothing was taken. Each row has `candidates`: fewer leases than
-- candidates (up to `limit`) means other workers won some of them (look again now).
-- The head claim (CTE `claimed`, the same in job_claim_head.sql and job_finish.sql;
-- tests/test_queries.py checks that): start an attempt of each job in CTE `head`
-- (head_id, head_queue, head_lease) if it is pending and due and its queue is not
-- paused: attempts are counted here, when the attempt starts.
-- `= ANY(ARRAY(...))` leaves the planner only primary keys: a cached generic plan must
-- never find the jobs by scanning an index of pending jobs, nor read a scope's queues.
-- The job columns are written out as queuetopia/db/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
WITH candidate AS (
    SELECT q.scope, q.queue
      FROM queuetopia_queues q
     WHERE q.scope = %(scope)s
       AND q.ready_at <= now()
       AND NOT q.paused
       AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[]))
       AND q.queue <> ALL(%(skip)s::text[])
       AND NOT EXISTS (
           SELECT 1 FROM queuetopia_leases l
            WHERE l.scope = q.scope AND l.queue = q.queue AND l.locked_until > now())
     ORDER BY q.ready_at
     LIMIT %(limit)s + 1
), taken AS (
    INSERT INTO queuetopia_leases AS l (scope, queue, lease_id, token, owner, acquired_at,
                                        locked_until)
    SELECT scope, queue, gen_random_uuid(), nextval('queuetopia_fence'), %(owner)s, now(),
           now() + make_interval(secs => %(ttl)s)
      FROM (SELECT * FROM candidate LIMIT %(limit)s) AS taken
    ON CONFLICT (scope, queue) DO UPDATE
       SET lease_id = EXCLUDED.lease_id, token = EXCLUDED.token, owner = EXCLUDED.owner,
           acquired_at = EXCLUDED.acquired_at, locked_until = EXCLUDED.locked_until
     WHERE l.locked_until <= now()
    RETURNING l.queue AS taken_queue, l.lease_id AS taken_lease, l.token AS taken_token
), head AS (
    SELECT next.id AS head_id, taken_queue AS head_queue, taken_lease AS head_lease
      FROM taken CROSS JOIN LATERAL (
           SELECT n.id FROM queuetopia_jobs n
            WHERE n.scope = %(scope)s AND n.queue = taken_queue AND n.in_line
            ORDER BY n.scheduled_at, n.seq
            LIMIT 1) AS next
     WHERE %(node)s::text IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM queuetopia_jobs r
                        WHERE r.scope = %(scope)s AND r.queue = taken_queue
                          AND r.state = 'running')
), claimed AS (
    UPDATE queuetopia_jobs j
       SET state = 'running', attempts = j.attempts + 1, attempted_at = now(),
           attempted_by = %(node)s, lease_id = head_lease, next_attempt_at = NULL,
           updated_at = now()
      FROM head
     WHERE j.id = ANY(ARRAY(SELECT head_id FROM head)) AND j.id = head_id
       AND j.state = 'pending'
       AND j.scheduled_at <= now() AND coalesce(j.next_attempt_at, j.scheduled_at) <= now()
       AND head_queue <> ALL(ARRAY(
           SELECT q.queue FROM queuetopia_queues q
            WHERE q.scope = %(scope)s AND q.queue = ANY(ARRAY(SELECT head_queue FROM head))
              AND q.paused))
    RETURNING id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
              timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
              failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
              unique_key, nullif(attempt_log, '[]') AS attempt_log,
              nullif(operator_log, '[]') AS operator_log
)
SELECT candidates, taken_queue, taken_lease, taken_token,
       id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
       timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
       failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
       unique_key, nullif(attempt_log, '[]') AS attempt_log,
       nullif(operator_log, '[]') AS operator_log
  FROM (SELECT count(*) AS candidates FROM candidate) AS counted
  LEFT JOIN taken ON true
  LEFT JOIN claimed ON claimed.queue = taken_queue
