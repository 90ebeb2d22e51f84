-- One step of a worker's queues, in one statement and one commit: the heart of the
-- product. Each item of the batch names a queue and may (in this order):
-- 1. take the queue's lease (in_acquire), if the queue exists, is due by its hint
--    and is not paused (a notification names queues, and anyone may notify), and the
--    worker has a slot for it: the items that take a queue name more queues than the
--    worker has slots (those with in_claim), and the longest waiting due ones are
--    taken. An expired or released lease is taken over; a live one, another
--    worker's, is left alone. The new holder learns the queue's
--    floor and whether the holder before vanished (takeover). A step retried after
--    its reply was lost (in_retry) finds the lease its first try took as it is;
-- 2. record the end of an attempt (in_id ...), fenced: only a job still running under
--    in_job_lease, in a queue whose lease is ours and live (docs/guarantees.md, rule
--    10). in_job_lease is our lease, or, for a lost worker's job, its dead lease. A
--    retried step counts as recorded an attempt its first try recorded (`already`);
-- 3. claim the queue's head (in_claim), unless the attempt just recorded left it in
--    line (a retry, a blocking failure): the head is the first job in line by
--    (scheduled_at, seq), and only the head is ever considered (rules 1 and 3; SKIP
--    LOCKED is never used, it would hand out the second job). It is claimed if it is
--    pending and due, the queue is not paused and the lease is ours and live;
--    attempts are counted here, when the attempt starts.
-- The head is searched from the item's floor (in_floor_at, in_floor_seq), a position
-- behind which nothing is in line, so the search never walks the index entries of the
-- queue's done jobs, dead or not (docs/design.md, "The floor"). Where the queue row
-- counts rewinds the item has not seen (a job put back before the floor), the search
-- starts at the rewind instead, the lease records them as seen and the queue row's
-- rewind position is cleared.
-- With in_zombies (a lease taken over from a vanished holder, or a step retried after
-- its reply was lost), a job of the queue still marked running is returned instead of
-- the head, even when it is not the head (an operator retried an earlier job while it
-- ran): under another lease it is a lost worker's, which the worker records as
-- "worker lost" first, or the queue would run two jobs at once; under ours, it is a
-- claim whose reply was lost.
-- `quiet` says whether a producer of the queue was in the middle of a transaction
-- (its advisory lock held): the worker moves its floor only past positions a quiet
-- step has vouched for (docs/design.md).
-- No lock on any shared row: the lease row is read, not locked. A takeover that races
-- a step meets it on the job rows, which every write here is fenced by.
-- Plans: a batch holds hundreds of items, so each CTE reaches tables by their keys
-- from the items (a nested loop over the items, an index probe each), and CTEs meet
-- each other only in hash joins on the queue; a join filter over two CTEs would
-- compare every item with every other.
-- One row per item, in no particular order: the lease (taken or held), whether a
-- queue to take was due (taken or not, for want of a slot), whether the attempt was
-- recorded, and `outcome` 'claimed' (the job, now running), 'head' (the
-- head as it is: not due, paused, blocked, or running under our lease: a claim whose
-- reply was lost), 'zombie' (a lost worker's running job), or NULL (no job in line).
-- The job columns are written out as queuetopia/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(batch)s::jsonb) AS batch(
           in_queue text, in_lease uuid, in_acquire bool, in_floor_at timestamptz,
           in_floor_seq bigint, in_seen bigint, in_zombies bool, in_retry bool,
           in_id bigint, in_attempts int, in_job_lease uuid, in_state text, in_error text,
           in_result jsonb, in_backoff float8, in_claim bool)
), candidate AS (
    -- The queues to take that are due by their hint, not paused, and free (or ours,
    -- when a retried step looks for what its first try took).
    SELECT in_queue AS cq, q.ready_at AS c_ready
      FROM input
      JOIN queuetopia_queues q ON q.scope = %(scope)s AND q.queue = in_queue
     WHERE in_acquire AND q.ready_at <= now() AND NOT q.paused
       AND NOT EXISTS (
           SELECT 1 FROM queuetopia_leases f
            WHERE f.scope = %(scope)s AND f.queue = in_queue AND f.locked_until > now()
              AND NOT (f.owner = %(owner)s AND coalesce(in_retry, false)))
), chosen AS (
    -- As many as the worker has slots for (one per item that claims), longest waiting
    -- first: it names more queues than it has slots, as many may not be due.
    SELECT cq FROM candidate
     ORDER BY c_ready
     LIMIT (SELECT count(*) FROM input WHERE in_acquire AND in_claim)
), took AS (
    INSERT INTO queuetopia_leases AS l (scope, queue, lease_id, token, owner, acquired_at,
                                        locked_until)
    SELECT %(scope)s, cq, gen_random_uuid(), nextval('queuetopia_fence'), %(owner)s,
           now(), now() + make_interval(secs => %(ttl)s)
      FROM chosen
     ORDER BY cq
    ON CONFLICT (scope, queue) DO UPDATE
       SET lease_id = CASE WHEN l.locked_until <= now() THEN EXCLUDED.lease_id
                           ELSE l.lease_id END,
           token = CASE WHEN l.locked_until <= now() THEN EXCLUDED.token ELSE l.token END,
           acquired_at = CASE WHEN l.locked_until <= now() THEN EXCLUDED.acquired_at
                              ELSE l.acquired_at END,
           locked_until = CASE WHEN l.locked_until <= now() THEN EXCLUDED.locked_until
                               ELSE l.locked_until END,
           owner = EXCLUDED.owner, takeover = l.locked_until > now() OR NOT l.released,
           released = false
     WHERE l.locked_until <= now()
        OR (l.owner = EXCLUDED.owner
            AND (SELECT in_retry FROM input WHERE in_queue = l.queue LIMIT 1))
    RETURNING l.queue AS took_queue, l.lease_id AS took_lease, l.token AS took_token,
              l.floor_at AS took_floor_at, l.floor_seq AS took_floor_seq,
              l.rewinds_seen AS took_seen, l.takeover AS took_takeover
), item AS (
    -- Each item with the lease it works under: ours and live, or taken now.
    SELECT input.*, l.lease_id AS l_lease, NULL::bigint AS l_token, in_floor_at AS l_floor_at,
           in_floor_seq AS l_floor_seq, in_seen AS l_seen,
           coalesce(in_zombies, false) AS l_zombies
      FROM input
      JOIN queuetopia_leases l
        ON l.scope = %(scope)s AND l.queue = in_queue AND l.lease_id = in_lease
     WHERE l.locked_until > now()
    UNION ALL
    SELECT input.*, took_lease, took_token, took_floor_at, took_floor_seq, took_seen,
           took_takeover OR coalesce(in_zombies, false)
      FROM took JOIN input ON in_queue = took_queue
), rec AS (
    UPDATE queuetopia_jobs j
       SET state = CASE WHEN in_state = 'parked' THEN 'failed' ELSE in_state END,
           lease_id = l_lease,
           on_exhausted = CASE WHEN in_state = 'parked' THEN 'skip' ELSE j.on_exhausted END,
           done_at = CASE WHEN in_state IN ('done', 'failed', 'parked') THEN now() END,
           result = in_result,
           error = coalesce(in_error, j.error),
           next_attempt_at = CASE WHEN in_state = 'pending'
                                  THEN now() + make_interval(secs => in_backoff) END,
           failing_since = CASE WHEN in_state = 'done' THEN NULL
                                ELSE coalesce(j.failing_since, now()) END,
           attempt_log = CASE
               WHEN in_state = 'done' AND j.attempt_log = '[]' THEN j.attempt_log
               ELSE (CASE WHEN jsonb_array_length(j.attempt_log) >= 20
                          THEN j.attempt_log - 0 ELSE j.attempt_log END)
                    || jsonb_build_array(jsonb_build_object(
                           'attempt', j.attempts, 'started_at', j.attempted_at,
                           'ended_at', now(), 'node', j.attempted_by,
                           'outcome', CASE in_state WHEN 'pending' THEN 'retry'
                                                    ELSE in_state END,
                           'error', left(in_error, 2000)))
           END,
           updated_at = now()
      FROM item
     WHERE j.id = in_id AND j.scope = %(scope)s AND j.queue = in_queue
       AND j.state = 'running' AND j.lease_id = in_job_lease
    RETURNING j.id AS rec_id, j.queue AS rec_queue, j.in_line AS rec_in_line
), already AS (
    SELECT j.id AS done_id, j.queue AS done_queue, j.in_line AS done_in_line
      FROM input JOIN queuetopia_jobs j ON j.id = in_id
     WHERE in_retry AND j.scope = %(scope)s AND j.state <> 'running'
       AND j.lease_id = in_lease AND j.attempts = in_attempts
), recorded AS (
    SELECT rec_id, rec_queue, rec_in_line FROM rec
    UNION ALL
    SELECT done_id, done_queue, done_in_line FROM already
), search AS (
    -- The items whose head is looked for, and where each search starts.
    SELECT in_queue AS sq, l_lease AS s_lease, l_zombies AS s_zombies, l_seen AS s_seen,
           q.paused AS s_paused, q.rewinds AS s_rewinds, q.rewind_at IS NOT NULL AS s_rewound,
           CASE WHEN q.rewind_at IS NULL OR q.rewinds <= l_seen
                     OR (q.rewind_at, q.rewind_seq)
                        >= (coalesce(l_floor_at, '-infinity'), coalesce(l_floor_seq, 0))
                THEN coalesce(l_floor_at, '-infinity') ELSE q.rewind_at END AS s_at,
           CASE WHEN q.rewind_at IS NULL OR q.rewinds <= l_seen
                     OR (q.rewind_at, q.rewind_seq)
                        >= (coalesce(l_floor_at, '-infinity'), coalesce(l_floor_seq, 0))
                THEN coalesce(l_floor_seq, 0) ELSE q.rewind_seq END AS s_seq,
           rec_id AS s_skip,
           pg_try_advisory_xact_lock_shared(1364479824,
                                            queuetopia_lock_key(%(scope)s::text, in_queue))
               AS s_quiet
      FROM item
      JOIN queuetopia_queues q ON q.scope = %(scope)s AND q.queue = in_queue
      LEFT JOIN recorded ON rec_queue = in_queue
     WHERE (in_claim OR in_acquire) AND (in_id IS NULL OR rec_id IS NOT NULL)
       AND (rec_in_line IS NULL OR NOT rec_in_line)
), seen AS (
    UPDATE queuetopia_leases l SET rewinds_seen = s_rewinds
      FROM search
     WHERE l.scope = %(scope)s AND l.queue = sq AND l.lease_id = s_lease
       AND s_rewinds > s_seen AND l.rewinds_seen < s_rewinds
    RETURNING l.queue
), cleared AS (
    -- The rewinds applied, the queue's rewind position is cleared, unless a producer
    -- or an operator holds the queue row (SKIP LOCKED: a worker never waits for them;
    -- the position stays, which only makes the next rewind search from further back).
    UPDATE queuetopia_queues q SET rewind_at = NULL, rewind_seq = NULL
      FROM search
     WHERE q.scope = %(scope)s AND q.queue = sq AND q.rewinds = s_rewinds
       AND s_rewound AND q.ctid = ANY(ARRAY(
           SELECT c.ctid FROM search
             JOIN queuetopia_queues c ON c.scope = %(scope)s AND c.queue = sq
            WHERE s_rewound AND c.rewind_at IS NOT NULL
              FOR NO KEY UPDATE OF c SKIP LOCKED))
    RETURNING q.queue
), zombie AS (
    SELECT sq AS zq, z.id AS zombie_id, z.lease_id IS DISTINCT FROM s_lease AS lost
      FROM search CROSS JOIN LATERAL (
           SELECT r.id, r.lease_id FROM queuetopia_jobs r
            WHERE r.scope = %(scope)s AND r.queue = sq AND r.state = 'running'
              AND r.id IS DISTINCT FROM s_skip
            LIMIT 1) AS z
     WHERE s_zombies
), head AS (
    SELECT sq AS hq, s_lease AS head_lease, s_paused AS head_paused, n.id AS head_id
      FROM search CROSS JOIN LATERAL (
           SELECT h.id FROM queuetopia_jobs h
            WHERE h.scope = %(scope)s AND h.queue = sq AND h.in_line
              AND (h.scheduled_at, h.seq) >= (s_at, s_seq)
              AND h.id IS DISTINCT FROM s_skip
            ORDER BY h.scheduled_at, h.seq
            LIMIT 1) AS n
     WHERE sq NOT IN (SELECT zq FROM zombie)
), claimed AS (
    UPDATE queuetopia_jobs j
       SET state = 'running', attempts = j.attempts + 1, attempted_at = now(),
           attempted_by = %(node)s, lease_id = head_lease, next_attempt_at = NULL,
           updated_at = now()
      FROM head
     WHERE j.id = head_id AND j.state = 'pending' AND NOT head_paused
       AND j.scheduled_at <= now() AND coalesce(j.next_attempt_at, j.scheduled_at) <= now()
    RETURNING id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
              timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
              failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
              unique_key, nullif(attempt_log, '[]') AS attempt_log,
              nullif(operator_log, '[]') AS operator_log
), unclaimed AS (
    -- The heads not claimed, and the jobs left running, returned as they are.
    SELECT zq AS uq, zombie_id AS u_id, lost AS u_lost FROM zombie
    UNION ALL
    SELECT hq, head_id, false FROM head
     WHERE head_id NOT IN (SELECT id FROM claimed)
), found AS (
    SELECT 'claimed' AS outcome, claimed.* FROM claimed
    UNION ALL
    SELECT CASE WHEN u_lost THEN 'zombie' ELSE 'head' END AS outcome,
           id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
           timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
           failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
           unique_key, nullif(attempt_log, '[]') AS attempt_log,
           nullif(operator_log, '[]') AS operator_log
      FROM unclaimed JOIN queuetopia_jobs ON id = u_id
)
SELECT input.in_queue AS step_queue, iq IS NOT NULL AS leased, l_lease AS step_lease,
       input.in_queue IN (SELECT cq FROM candidate) AS due,
       l_token AS step_token, l_floor_at AS step_floor_at, l_floor_seq AS step_floor_seq,
       l_seen AS step_seen, l_zombies AS step_takeover, rec_id IS NOT NULL AS recorded,
       sq IS NOT NULL AS searched, nullif(s_at, '-infinity') AS search_at,
       s_seq AS search_seq, s_quiet AS quiet, s_rewinds AS rewinds,
       s_paused AS paused, (SELECT count(*) FROM seen) + (SELECT count(*) FROM cleared)
           AS rewinds_settled, now() AS db_now,
       found.*
  FROM input
  LEFT JOIN (SELECT in_queue AS iq, l_lease, l_token, l_floor_at, l_floor_seq, l_seen,
                    l_zombies FROM item) AS item ON iq = input.in_queue
  LEFT JOIN recorded ON rec_queue = input.in_queue
  LEFT JOIN search ON sq = input.in_queue
  LEFT JOIN found ON found.queue = input.in_queue
