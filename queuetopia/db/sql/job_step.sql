-- One step of a worker's queues, in one statement and one commit: the heart of the
-- product. The batch is {"items": [...], "finishes": {job id: {...}}}. Each item
-- names a queue and may (in this order):
-- 1. take the queue's lease (in_acquire), if the queue exists, is due by its hint
--    and is not paused (a notification names queues, and anyone may notify), and the
--    worker has a slot for it: the items that take a queue name more queues than the
--    worker has slots (those with in_claim), and the longest waiting due ones are
--    taken. An expired or released lease is taken over; a live one, another
--    worker's, is left alone. The new holder learns the queue's
--    floor and whether the holder before vanished (takeover). A step retried after
--    its reply was lost (in_retry) finds the lease its first try took as it is;
-- 2. record the end of an attempt (in_id; the end in `finishes`), fenced: only a job
--    still running under the finish's job_lease, in a queue whose lease is ours and
--    live (docs/guarantees.md, rule 10). job_lease is our lease, or, for a lost
--    worker's job, its dead lease. An item that takes a lease records nothing. A
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
-- Plans: a batch holds hundreds of items and the planner's estimates for it are
-- guesses (a fresh table has no statistics, the batch's size is unknown), so no plan
-- may compare every item with every other (a nested loop rescanning a CTE once per
-- item: 256 items, 65,536 comparisons, 20 ms). By construction, whatever the
-- estimates: a table is reached from the items through a LATERAL subquery (OFFSET 0
-- keeps it apart: it runs once per item, an index probe on its key); an UPDATE finds
-- its rows by their keys in an array (`= ANY` of a one-row CTE, an index condition)
-- and each row's values by its key in a jsonb object (`finishes`, or a one-row
-- CTE's); CTEs meet each other only through such objects or in hashed `NOT IN`
-- lists. Each such CTE is MATERIALIZED: inlined, it would be computed again per row.
-- The reply is one row per job found, and one row whose `step` (a jsonb object) says
-- what the step did, by queue; queuetopia/db/steps.py puts them together:
-- held [queues whose lease, ours, is still live], taken {queue: [lease, token,
-- floor_at, floor_seq, seen, takeover]}, due [queues to take that were due, taken or
-- not, for want of a slot], recorded [queues whose attempt was recorded], searched
-- {queue: [quiet, rewinds, paused]}, rewound {queue: [search_at, search_seq]} for
-- the searches that started at a rewind rather than at the floor, and rated {job id:
-- [queue, seconds]} for the heads a rate limit held back (NULL: none), waiting
-- {queue: [job ids]} for the heads that wait for other jobs not done (NULL: none;
-- the worker then has each of them wake the queue when done: job_await.sql). A found job's
-- `outcome` is 'claimed' (the job, now running), 'head' (the head as it is: not due,
-- paused, blocked, or running under our lease: a claim whose reply was lost) or
-- 'zombie' (a lost worker's running job).
-- The job columns are written out as queuetopia/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(batch)s::jsonb -> 'items') AS batch(
           in_queue text, in_lease uuid, in_acquire bool, in_floor_at timestamptz,
           in_floor_seq bigint, in_seen bigint, in_zombies bool, in_retry bool,
           in_id bigint, in_attempts int, in_claim bool)
), candidate AS (
    -- The queues to take that are due by their hint, not paused, and free (or ours,
    -- when a retried step looks for what its first try took). The queue row is looked
    -- up by its key alone: with ready_at in the lookup, a plan made on an empty
    -- install may walk the ready_at index for every item.
    SELECT in_queue AS cq, c_ready
      FROM input CROSS JOIN LATERAL (
           SELECT q.ready_at AS c_ready, q.paused AS c_paused FROM queuetopia_queues q
            WHERE q.scope = %(scope)s AND q.queue = in_queue
           OFFSET 0) AS c
     WHERE in_acquire
       AND CASE WHEN c_ready IS NULL OR c_ready > now() OR c_paused THEN false
                ELSE NOT EXISTS (
                     SELECT 1 FROM queuetopia_leases f
                      WHERE f.scope = %(scope)s AND f.queue = in_queue
                        AND f.locked_until > now()
                        AND NOT (f.owner = %(owner)s AND coalesce(in_retry, false)))
           END
), chosen AS (
    -- As many as the worker has slots for (one per item that claims), longest waiting
    -- first: it names more queues than it has slots, as many may not be due. Each is
    -- tried with a lock no other step is taking it (class 1364479825, the step's until
    -- it commits): two workers told of the same queues would otherwise meet on its
    -- lease row, one waiting for the other's commit to find it taken. The lock is
    -- tried in that order until the slots are filled (the LIMIT stops the reading), so
    -- a queue named but not needed stays free for the other workers' steps.
    SELECT cq FROM (SELECT cq, c_ready FROM candidate ORDER BY c_ready OFFSET 0) AS c
     WHERE pg_try_advisory_xact_lock(1364479825, queuetopia_lock_key(%(scope)s::text, cq))
     LIMIT (SELECT count(*) FROM input WHERE in_acquire AND in_claim)
), taken AS MATERIALIZED (
    -- The leases taken (queuetopia_leases_take, only when there are queues to take):
    -- {queue: [lease, token, floor_at, floor_seq, seen, takeover]}.
    SELECT coalesce((
           SELECT queuetopia_leases_take(
                      %(scope)s, %(owner)s, %(ttl)s, c_queues,
                      ARRAY(SELECT in_queue FROM input WHERE in_retry))
             FROM (SELECT array_agg(cq) AS c_queues FROM chosen) AS c
            WHERE c_queues IS NOT NULL), '{}') AS t_map
), item AS (
    -- Each item with the lease it works under: ours and live, or taken now. An item
    -- that takes a lease records no attempt (it has none under the new lease).
    SELECT input.*, h.lease_id AS l_lease, NULL::bigint AS l_token, in_floor_at AS l_floor_at,
           in_floor_seq AS l_floor_seq, in_seen AS l_seen,
           coalesce(in_zombies, false) AS l_zombies
      FROM input CROSS JOIN LATERAL (
           SELECT l.lease_id FROM queuetopia_leases l
            WHERE l.scope = %(scope)s AND l.queue = in_queue AND l.lease_id = in_lease
              AND l.locked_until > now()
           OFFSET 0) AS h
    UNION ALL
    SELECT input.*, (t->>0)::uuid, (t->>1)::bigint, (t->>2)::timestamptz, (t->>3)::bigint,
           (t->>4)::bigint, (t->>5)::bool OR coalesce(in_zombies, false)
      FROM input CROSS JOIN taken CROSS JOIN LATERAL (SELECT t_map -> in_queue) AS x(t)
     WHERE in_acquire AND t IS NOT NULL
), recs AS MATERIALIZED (
    -- The attempts to record: the items' jobs under a live lease of ours. Each one's
    -- end is in the batch's `finishes`, by job id.
    SELECT coalesce(array_agg(in_id), '{}') AS r_ids
      FROM item
     WHERE in_id IS NOT NULL AND NOT in_acquire
), rec AS (
    -- A job claimed ahead and given back unstarted (f.unstarted) gets its attempt
    -- back, and keeps its error, log and failing time: it did not run. A snooze
    -- (docs/flow-control.md) is pending again, its attempt not counted, logged, and
    -- holds its queue as a failure does (failing_since: since when the head has held
    -- it). A job an operator asked to cancel while it ran (cancel_request) ends
    -- cancelled, whatever its attempt made of it, unless it is done: the request and
    -- the attempt's own end meet on this row, so exactly one of them wins.
    UPDATE queuetopia_jobs j
       SET (state, lease_id, on_exhausted, done_at, result, error, next_attempt_at,
            failing_since, attempt_log, attempts, cancel_request, updated_at) = (
           SELECT CASE WHEN j.cancel_request IS NOT NULL AND f.state <> 'done' THEN 'cancelled'
                       WHEN f.state = 'parked' THEN 'failed'
                       WHEN f.state = 'snoozed' THEN 'pending'
                       ELSE f.state END,
                  f.lease,
                  CASE WHEN f.state = 'parked' THEN 'skip' ELSE j.on_exhausted END,
                  CASE WHEN f.state IN ('done', 'failed', 'parked')
                            OR j.cancel_request IS NOT NULL THEN now() END,
                  f.result,
                  CASE WHEN j.cancel_request IS NOT NULL AND f.state <> 'done'
                       THEN 'cancelled: ' || (j.cancel_request ->> 'reason')
                            || coalesce(E'\nlast error: ' || j.error, '')
                       ELSE coalesce(f.error, j.error) END,
                  CASE WHEN f.state IN ('pending', 'snoozed') AND j.cancel_request IS NULL
                       THEN now() + make_interval(secs => f.backoff) END,
                  CASE WHEN f.state = 'done' THEN NULL
                       WHEN f.unstarted THEN j.failing_since
                       ELSE coalesce(j.failing_since, now()) END,
                  CASE
                      WHEN f.unstarted THEN j.attempt_log
                      WHEN f.state = 'done' AND j.attempt_log = '[]' THEN j.attempt_log
                      ELSE (CASE WHEN jsonb_array_length(j.attempt_log) >= 20
                                 THEN j.attempt_log - 0 ELSE j.attempt_log END)
                           || jsonb_build_array(jsonb_build_object(
                                  'attempt', j.attempts, 'started_at', j.attempted_at,
                                  'ended_at', now(), 'node', j.attempted_by,
                                  'outcome', CASE WHEN j.cancel_request IS NOT NULL
                                                       AND f.state <> 'done' THEN 'cancelled'
                                                  WHEN f.state = 'pending' THEN 'retry'
                                                  ELSE f.state END,
                                  'error', left(f.error, 2000)))
                  END,
                  j.attempts - CASE WHEN f.unstarted OR (f.state = 'snoozed'
                                                         AND j.cancel_request IS NULL)
                                    THEN 1 ELSE 0 END,
                  NULL::jsonb,
                  now()
             FROM jsonb_to_record(%(batch)s::jsonb -> 'finishes' -> j.id::text)
                  AS f(lease uuid, state text, error text, result jsonb, backoff float8,
                       unstarted bool))
     WHERE j.id = ANY((SELECT r_ids FROM recs)::bigint[]) AND j.scope = %(scope)s
       -- A value the planner cannot see: with the literal it may scan the partial
       -- index of the running jobs, every one of the scope, for each step.
       AND j.state = (SELECT 'running')
       AND j.queue = %(batch)s::jsonb -> 'finishes' -> j.id::text ->> 'queue'
       AND j.lease_id = (%(batch)s::jsonb -> 'finishes' -> j.id::text ->> 'job_lease')::uuid
    RETURNING j.id AS rec_id, j.queue AS rec_queue, j.in_line AS rec_in_line,
              -- The queues whose heads wait for this job (wake), woken once it is done.
              CASE WHEN j.wake IS NOT NULL AND j.state = 'done'
                   THEN pg_notify('queuetopia', CASE WHEN cardinality(j.wake) > 20
                                                     THEN jsonb_build_array(j.scope, '')::text
                                                     ELSE (jsonb_build_array(j.scope)
                                                           || to_jsonb(j.wake))::text END)
              END AS rec_woke
), already AS (
    SELECT j.*
      FROM input CROSS JOIN LATERAL (
           SELECT j.id AS done_id, j.queue AS done_queue, j.in_line AS done_in_line
             FROM queuetopia_jobs j
            WHERE j.id = in_id AND j.scope = %(scope)s AND j.state <> 'running'
              AND j.lease_id = in_lease AND j.attempts = in_attempts
           OFFSET 0) AS j
     WHERE in_retry
), recorded AS (
    SELECT rec_id, rec_queue, rec_in_line FROM rec
    UNION ALL
    SELECT done_id, done_queue, done_in_line FROM already
), done AS MATERIALIZED (
    SELECT coalesce(jsonb_object_agg(rec_queue, jsonb_build_array(rec_id, rec_in_line)), '{}')
               AS d_map
      FROM recorded
), search AS (
    -- The items whose head is looked for, and where each search starts: the floor, or
    -- the queue's rewind position (s_rewind).
    SELECT in_queue AS sq, l_lease AS s_lease, l_zombies AS s_zombies, l_seen AS s_seen,
           in_acquire AS s_taken,
           q.paused AS s_paused, q.rewinds AS s_rewinds, q.rewind_at IS NOT NULL AS s_rewound,
           w.rewind AS s_rewind,
           CASE WHEN w.rewind THEN q.rewind_at ELSE coalesce(l_floor_at, '-infinity') END
               AS s_at,
           CASE WHEN w.rewind THEN q.rewind_seq ELSE coalesce(l_floor_seq, 0) END AS s_seq,
           (d->>0)::bigint AS s_skip,
           pg_try_advisory_xact_lock_shared(1364479824,
                                            queuetopia_lock_key(%(scope)s::text, in_queue))
               AS s_quiet
      FROM item CROSS JOIN done CROSS JOIN LATERAL (SELECT d_map -> in_queue) AS r(d)
      CROSS JOIN LATERAL (
           SELECT q.paused, q.rewinds, q.rewind_at, q.rewind_seq FROM queuetopia_queues q
            WHERE q.scope = %(scope)s AND q.queue = in_queue
           OFFSET 0) AS q
      CROSS JOIN LATERAL (
           SELECT q.rewind_at IS NOT NULL AND q.rewinds > l_seen
                  AND (q.rewind_at, q.rewind_seq)
                      < (coalesce(l_floor_at, '-infinity'), coalesce(l_floor_seq, 0))
           ) AS w(rewind)
     WHERE (in_claim OR in_acquire) AND (in_id IS NULL OR d IS NOT NULL)
       AND NOT coalesce((d->>1)::bool, false)
), unseen AS MATERIALIZED (
    -- The rewinds to mark seen, by queue: [lease, rewinds, the rewind's position when
    -- the search starts there], on the leases held (a lease taken here folded it into
    -- its floor already); and the queues' rewind positions to clear. Rare: applied by
    -- queuetopia_rewinds_apply, called only when there are some (`step`).
    SELECT coalesce(jsonb_object_agg(sq, jsonb_build_array(
                        s_lease, s_rewinds,
                        CASE WHEN s_rewind THEN jsonb_build_array(s_at, s_seq) END))
                        FILTER (WHERE s_rewinds > s_seen AND NOT s_taken), '{}') AS w_map,
           coalesce(array_agg(sq) FILTER (WHERE s_rewinds > s_seen AND NOT s_taken), '{}')
               AS w_queues,
           coalesce(jsonb_object_agg(sq, s_rewinds) FILTER (WHERE s_rewound), '{}') AS c_map,
           coalesce(array_agg(sq) FILTER (WHERE s_rewound), '{}') AS c_queues
      FROM search
     WHERE s_rewinds > s_seen OR s_rewound
), zombie AS (
    SELECT sq AS zq, z.id AS zombie_id, z.lease_id IS DISTINCT FROM s_lease AS lost
      FROM search CROSS JOIN LATERAL (
           SELECT r.id, r.lease_id FROM queuetopia_jobs r
            WHERE r.scope = %(scope)s AND r.queue = sq AND r.state = 'running'
              AND r.id IS DISTINCT FROM s_skip
            LIMIT 1) AS z
     WHERE s_zombies
), head AS (
    -- A head that waits for other jobs (docs/flow-control.md) lists those not done
    -- (`head_waits`, NULL for a head that waits for none).
    SELECT sq AS hq, s_lease AS head_lease, s_paused AS head_paused, n.id AS head_id,
           n.scheduled_at AS head_at, n.due AS head_due, n.waits AS head_waits
      FROM search CROSS JOIN LATERAL (
           SELECT h.id, h.scheduled_at,
                  h.state = 'pending' AND h.scheduled_at <= now()
                  AND coalesce(h.next_attempt_at, h.scheduled_at) <= now() AS due,
                  CASE WHEN h.depends_on IS NOT NULL
                       THEN queuetopia_waits(h.scope, h.depends_on) END AS waits
             FROM queuetopia_jobs h
            WHERE h.scope = %(scope)s AND h.queue = sq AND h.in_line
              AND (h.scheduled_at, h.seq) >= (s_at, s_seq)
              AND h.id IS DISTINCT FROM s_skip
            ORDER BY h.scheduled_at, h.seq
            LIMIT 1) AS n
     WHERE sq NOT IN (SELECT zq FROM zombie)
), heads AS MATERIALIZED (
    -- The heads to claim, by job id: the lease each is claimed under; those not
    -- claimed because they wait for other jobs (h_waits: {queue: [job ids]}). Rate
    -- limits (docs/flow-control.md): where the scope has one, the due heads take a
    -- token of each limit covering their queue, longest waiting first, or are held
    -- back (h_held: {job id: [queue, seconds until it may start]}). Without one, one
    -- probe of queuetopia_limits, and neither the call nor its ordered inputs: a
    -- subquery in a CASE branch not taken is never run.
    SELECT coalesce(array_agg(head_id) FILTER (WHERE h_claim), '{}') AS h_ids,
           jsonb_object_agg(head_id::text, head_lease) FILTER (WHERE h_claim) AS h_map,
           CASE WHEN EXISTS (SELECT 1 FROM queuetopia_limits WHERE scope = %(scope)s)
                THEN (SELECT queuetopia_rate_take(
                                 %(scope)s,
                                 coalesce(array_agg(head_id ORDER BY head_at, head_id), '{}'),
                                 coalesce(array_agg(hq ORDER BY head_at, head_id), '{}'))
                        FROM head
                       WHERE head_due AND NOT head_paused AND head_waits IS NULL)
           END AS h_held,
           jsonb_object_agg(hq, head_waits) FILTER (WHERE head_waits IS NOT NULL) AS h_waits
      FROM head CROSS JOIN LATERAL (SELECT NOT head_paused AND head_waits IS NULL) AS c(h_claim)
), claimed AS (
    UPDATE queuetopia_jobs j
       SET state = 'running', attempts = j.attempts + 1, attempted_at = now(),
           attempted_by = %(node)s,
           lease_id = ((SELECT h_map FROM heads) ->> j.id::text)::uuid,
           next_attempt_at = NULL, updated_at = now()
     WHERE j.id = ANY((SELECT h_ids FROM heads)::bigint[]) AND j.state = 'pending'
       AND NOT coalesce((SELECT h_held FROM heads) ? j.id::text, false)
       AND j.scheduled_at <= now()
       AND coalesce(j.next_attempt_at, j.scheduled_at) <= now()
    RETURNING id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
              timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
              failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
              unique_key, depends_on, nullif(attempt_log, '[]') AS attempt_log,
              nullif(operator_log, '[]') AS operator_log
), unclaimed AS (
    -- The heads not claimed, and the jobs left running, returned as they are.
    SELECT zombie_id AS u_id, lost AS u_lost FROM zombie
    UNION ALL
    SELECT head_id, false FROM head
     WHERE head_id NOT IN (SELECT id FROM claimed)
), found AS (
    SELECT 'claimed' AS outcome, claimed.* FROM claimed
    UNION ALL
    SELECT CASE WHEN u_lost THEN 'zombie' ELSE 'head' END, j.*
      FROM unclaimed CROSS JOIN LATERAL (
           SELECT id, scope, queue, seq, action, params, state, on_exhausted, attempts,
                  max_attempts, timeout, max_backoff, scheduled_at, attempted_at,
                  attempted_by, next_attempt_at, failing_since, done_at, error, result,
                  lease_id, inserted_at, updated_at, meta, unique_key, depends_on,
                  nullif(attempt_log, '[]') AS attempt_log,
                  nullif(operator_log, '[]') AS operator_log
             FROM queuetopia_jobs
            WHERE id = u_id
           OFFSET 0) AS j
), step AS (
    SELECT jsonb_build_object(
               'held', (SELECT coalesce(jsonb_agg(in_queue), '[]') FROM item
                         WHERE NOT in_acquire),
               'taken', (SELECT t_map FROM taken),
               'due', (SELECT coalesce(jsonb_agg(cq), '[]') FROM candidate),
               'recorded', (SELECT coalesce(jsonb_agg(rec_queue), '[]') FROM recorded),
               'searched', (SELECT coalesce(jsonb_object_agg(sq, jsonb_build_array(
                                       s_quiet, s_rewinds, s_paused)), '{}')
                              FROM search),
               'rewound', (SELECT coalesce(jsonb_object_agg(sq, jsonb_build_array(
                                      s_at, s_seq)), '{}')
                             FROM search WHERE s_rewind))
               -- The rewinds applied (NULL: none to apply), by a function: the
               -- updates it makes, as CTEs of this statement, were made ready at
               -- every step (their tables and indexes opened), 40 µs of a step's 600
               -- (docs/design.md, "What a step costs").
               || CASE WHEN w_queues <> '{}' OR c_queues <> '{}'
                       THEN jsonb_build_object('rewinds_applied', queuetopia_rewinds_apply(
                                %(scope)s, w_map, w_queues, c_map, c_queues))
                       ELSE '{}' END
               AS step, now() AS db_now, h_held AS rated, h_waits AS waiting
      FROM heads CROSS JOIN unseen
)
SELECT step.*, found.* FROM step LEFT JOIN found ON false
UNION ALL
SELECT NULL, NULL, NULL, NULL, found.* FROM found
