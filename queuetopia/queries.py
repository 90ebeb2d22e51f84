"""Every SQL statement queuetopia runs, named noun-first.

All values are bound parameters; no statement is ever built from user input.
Time is always the database's (`now()`, `clock_timestamp()`), never a worker's.
"""

from __future__ import annotations

from typing import LiteralString

CHANNEL = "queuetopia"

# Empty logs come back as NULL (the Job model reads that as empty): most jobs have
# none, and two JSON parses per claimed job were a measurable share of a worker's CPU.
JOB_COLUMNS: LiteralString = """
    id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
    timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
    failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
    unique_key, nullif(attempt_log, '[]') AS attempt_log,
    nullif(operator_log, '[]') AS operator_log"""

# A job's attempt_log keeps its last 20 attempts and 2000 characters of each error
# (JOB_FINISH); its operator_log the last 50 operator actions.

# The fence of every write made under a lease: our lease row, live, locked against a
# concurrent takeover until the write commits (rule 3.10). Writes add
# `AND EXISTS (SELECT 1 FROM lease)`.
LEASE_FENCE: LiteralString = """
WITH lease AS (
    SELECT 1 FROM queuetopia_leases
     WHERE scope = %(scope)s AND queue = %(queue)s AND lease_id = %(lease_id)s
       AND locked_until > now()
       FOR UPDATE
)"""

# Start an attempt of each job in CTE `head` (head_id, head_queue, head_lease) if it
# is pending and due and its queue is not paused: attempts are counted here, when the
# attempt starts. Callers add the fence.
# `= ANY(ARRAY(...))` leaves the planner only primary keys: a cached generic plan must
# never find the jobs by scanning an index of pending jobs, nor read a scope's queues.
HEAD_CLAIM: LiteralString = """
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
"""

# Enqueue jobs for any number of queues and actions, in one round trip: the one
# statement behind every enqueue (docs/enqueue.md).
# - The input arrays hold one element per job, in the caller's order; the params
#   come as one JSON array (no per-element quoting of a jsonb[] literal).
# - Locks: the queue rows are upserted once per queue (an upsert cannot touch a row
#   twice, so the jobs are counted per queue first), in queue-name order, so two bulk
#   producers never deadlock. Each row lock holds until the caller's transaction
#   commits: a second producer of the same queue waits here, which makes `seq` (and,
#   for jobs due now, `scheduled_at`, read from the clock after the lock) follow
#   commit order (docs/guarantees.md). Other queues never contend.
# - seq: each queue's block of numbers is taken at once; a job's place in its block
#   is its place in the input among the jobs of its queue.
# - A job whose unique_key is held by a job still in line in its queue is not
#   written (the partial unique index decides, race-safe); `position` tells the
#   caller which jobs were written.
# - ready_at is only lowered: a new job can make a queue due sooner, never later.
# - One notification for the whole call (`wake`: the queue, or '' for "look at every
#   queue" when the call spans several), delivered when the caller commits.
# - Only the columns the database makes (and params, which jsonb may normalise: a
#   float like 7.2e16 comes back as an integer) are returned: the caller knows the
#   rest, and reading back 1,000 whole rows cost more than writing them.
_JOB_INPUT_MANY: LiteralString = """
WITH input AS (
    SELECT * FROM ROWS FROM (
               unnest(%(queues)s::text[]), unnest(%(actions)s::text[]),
               jsonb_array_elements(%(params)s::jsonb),
               unnest(%(ats)s::timestamptz[]), unnest(%(delays)s::float8[]),
               unnest(%(timeouts)s::float8[]), unnest(%(max_attempts)s::int[]),
               unnest(%(max_backoffs)s::float8[]), unnest(%(on_exhausted)s::text[]),
               unnest(%(unique_keys)s::text[]))
           WITH ORDINALITY AS i(in_queue, in_action, in_params, in_at, in_delay,
                                in_timeout, in_max_attempts, in_max_backoff,
                                in_on_exhausted, in_unique_key, in_ord)
)"""

# The input of a batch whose jobs differ only in their params (a `.delay`, a
# `delay_many`): one value for each other column, not an array of copies. psycopg
# dumps arrays element by element in Python: ten of them cost a one-job enqueue as
# much as all the rest of it, and a thousand-job batch a third of its CPU.
_JOB_INPUT_UNIFORM: LiteralString = """
WITH input AS (
    SELECT %(queues)s::text AS in_queue, %(actions)s::text AS in_action, p.in_params,
           %(ats)s::timestamptz AS in_at, %(delays)s::float8 AS in_delay,
           %(timeouts)s::float8 AS in_timeout, %(max_attempts)s::int AS in_max_attempts,
           %(max_backoffs)s::float8 AS in_max_backoff,
           %(on_exhausted)s::text AS in_on_exhausted, %(unique_keys)s::text AS in_unique_key,
           p.in_ord
      FROM jsonb_array_elements(%(params)s::jsonb) WITH ORDINALITY AS p(in_params, in_ord)
)"""

_JOB_INSERT: LiteralString = """, per_queue AS (
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
"""
JOB_INSERT_MANY: LiteralString = _JOB_INPUT_MANY + _JOB_INSERT
JOB_INSERT_UNIFORM: LiteralString = _JOB_INPUT_UNIFORM + _JOB_INSERT

# The jobs in line that hold these (queue, unique_key) pairs: what an enqueue whose
# job was not written (its key was taken) returns instead. A statement of its own,
# after JOB_INSERT_MANY: that statement's snapshot may predate the holder's commit.
JOB_GET_UNIQUE: LiteralString = (
    "SELECT"
    + JOB_COLUMNS
    + """
  FROM queuetopia_jobs
 WHERE scope = %(scope)s AND unique_key IS NOT NULL AND in_line
   AND (queue, unique_key) IN (
       SELECT * FROM unnest(%(queues)s::text[], %(unique_keys)s::text[]))
"""
)

# Wake every worker of a scope (an empty queue name means "look at everything").
SCOPE_NOTIFY: LiteralString = """
SELECT pg_notify('queuetopia', json_build_array(%(scope)s::text, %(queue)s::text)::text)
"""

# Take leases on up to `limit` due queues of a scope, longest waiting first, and with
# `node` set, claim the head of each queue taken in the same statement (one round trip
# from a notification to a running job).
# Candidates come from the ready_at index, never from a scan of pending jobs. A queue
# whose lease is live is skipped; an expired lease is taken over. A queue with a
# running job (a lost worker's) is not claimed here: the worker recovers that job
# first, with JOB_CLAIM_HEAD. Two workers racing for one queue meet on the lease
# primary key: the second sees a live lease and gets nothing.
# `candidates` tells whether more queues were due than were taken (then the worker
# makes its runners take turns). `skip` lists queues this worker found not ready but
# could not correct (a producer held the queue row), so it does not spin on them.
# One row per lease, with the job columns of the claimed head or NULL; a single row
# of NULLs when nothing was taken. Each row has `candidates`: fewer leases than
# candidates (up to `limit`) means other workers won some of them (look again now).
LEASE_ACQUIRE: LiteralString = (
    """
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
), claimed AS ("""
    + HEAD_CLAIM
    + """    RETURNING"""
    + JOB_COLUMNS
    + """
)
SELECT candidates, taken_queue, taken_lease, taken_token,"""
    + JOB_COLUMNS
    + """
  FROM (SELECT count(*) AS candidates FROM candidate) AS counted
  LEFT JOIN taken ON true
  LEFT JOIN claimed ON claimed.queue = taken_queue
"""
)

# The live leases a worker owns. After an acquisition whose reply was lost, the
# worker adopts those it does not know: their heads may have been claimed already.
LEASE_OWNED: LiteralString = """
SELECT queue, lease_id, token FROM queuetopia_leases
 WHERE scope = %(scope)s AND owner = %(owner)s AND locked_until > now()
"""

# Is any queue of the scope due and free? Tells a draining worker to yield its slot.
QUEUE_ANY_DUE: LiteralString = """
SELECT EXISTS (
    SELECT 1 FROM queuetopia_queues q
     WHERE q.scope = %(scope)s AND q.ready_at <= now() AND NOT q.paused
       AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[]))
       AND q.queue <> ALL(%(skip)s::text[])
       AND NOT EXISTS (
           SELECT 1 FROM queuetopia_leases l
            WHERE l.scope = q.scope AND l.queue = q.queue AND l.locked_until > now()))
"""

# Seconds until the worker should look again (NULL: nothing to wait for): when the
# earliest queue of the scope becomes due, or when another worker's lease on a due
# queue runs out (a worker that died stops renewing it: its queue is then recovered
# after lock_ttl, not lock_ttl plus a poll).
QUEUE_NEXT_DUE: LiteralString = """
SELECT extract(epoch FROM least(
    (SELECT min(q.ready_at) FROM queuetopia_queues q
      WHERE q.scope = %(scope)s AND q.ready_at > now() AND NOT q.paused
        AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[]))),
    (SELECT min(l.locked_until) FROM queuetopia_leases l
       JOIN queuetopia_queues q ON q.scope = l.scope AND q.queue = l.queue
      WHERE l.scope = %(scope)s AND l.owner <> %(owner)s AND l.locked_until > now()
        AND q.ready_at <= now() AND NOT q.paused
        AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[])))
) - now())::float8 AS seconds
"""

# Renew every lease this worker holds in one statement (the heartbeat).
# A queue missing from the result is lost: its lease expired or was taken over.
# The rows are locked in queue order, as JOB_FINISH locks them, so a heartbeat and a
# batch of outcomes of the same worker never deadlock.
LEASE_RENEW: LiteralString = """
WITH held AS (
    SELECT l.queue AS held_queue
      FROM queuetopia_leases l
      JOIN unnest(%(queues)s::text[], %(lease_ids)s::uuid[]) AS h(queue, lease_id)
        ON l.queue = h.queue AND l.lease_id = h.lease_id
     WHERE l.scope = %(scope)s AND l.queue = ANY(%(queues)s::text[])
       AND l.locked_until > now()
     ORDER BY l.queue
       FOR UPDATE OF l
)
UPDATE queuetopia_leases l
   SET locked_until = now() + make_interval(secs => %(ttl)s)
  FROM held
 WHERE l.scope = %(scope)s AND l.queue = held_queue
RETURNING l.queue
"""

# Give a queue back: drop the lease and correct the queue's ready_at hint
# (queuetopia_queue_refresh skips that if a producer holds the queue row).
# The commit does not wait for its WAL flush (synchronous_commit off for this
# transaction only): a release lost in a database crash leaves the lease to run out
# after lock_ttl, as a dead worker's does, and nothing else depends on it. The next
# synchronous commit flushes it anyway.
LEASE_RELEASE: LiteralString = """
WITH gone AS (
    DELETE FROM queuetopia_leases
     WHERE scope = %(scope)s AND queue = %(queue)s AND lease_id = %(lease_id)s
    RETURNING 1
)
SELECT queuetopia_queue_refresh(%(scope)s, %(queue)s) AS refreshed,
       (SELECT count(*) FROM gone) AS released,
       set_config('synchronous_commit', 'off', true) AS commit_mode
"""

# Claim the head of a queue under a lease: the heart of the product.
# - The head is the first job still in line by (scheduled_at, seq), found by the
#   queuetopia_jobs_line index; only the head is ever considered (rules 3.1, 3.3).
#   SKIP LOCKED is never used here: it would hand out the second job.
# - A job of the queue left running by a lost worker is returned instead of the
#   head, even when it is not the head (an operator retried an earlier job while it
#   ran): it must be recovered first, or the queue would run two jobs at once.
# - It is claimed only if it is pending and due, the queue is not paused, and the
#   lease is ours and live. `FOR UPDATE` on the lease row serialises the claim
#   against a takeover, so a stale worker can never claim (rule 3.10).
# - attempts is counted here, when the attempt starts, so a job that kills its
#   worker still uses up its attempts.
# - The partial unique index on running jobs backs rule 3.2 up.
# The result has one row: the lease flag, plus either the claimed job
# (outcome 'claimed') or the unclaimed head as it was (outcome 'head'), so the
# worker can tell an empty queue from a lost worker's job or a job not yet due.
JOB_CLAIM_HEAD: LiteralString = (
    LEASE_FENCE
    + """, running AS (
    SELECT id AS head_id FROM queuetopia_jobs
     WHERE scope = %(scope)s AND queue = %(queue)s AND state = 'running'
), first AS (
    SELECT head_id FROM running
    UNION ALL
    (SELECT id FROM queuetopia_jobs
      WHERE scope = %(scope)s AND queue = %(queue)s AND in_line
        AND NOT EXISTS (SELECT 1 FROM running)
      ORDER BY scheduled_at, seq
      LIMIT 1)
), head AS (
    SELECT head_id, %(queue)s::text AS head_queue, %(lease_id)s::uuid AS head_lease
      FROM first
), claimed AS ("""
    + HEAD_CLAIM
    + """       AND EXISTS (SELECT 1 FROM lease)
    RETURNING"""
    + JOB_COLUMNS
    + """
), found AS (
    SELECT 'claimed' AS outcome, """
    + JOB_COLUMNS
    + """ FROM claimed
    UNION ALL
    SELECT 'head' AS outcome, """
    + JOB_COLUMNS
    + """
      FROM queuetopia_jobs
     WHERE id = (SELECT head_id FROM head) AND NOT EXISTS (SELECT 1 FROM claimed)
)
SELECT EXISTS (SELECT 1 FROM lease) AS leased, found.*
  FROM (SELECT 1) AS one LEFT JOIN found ON true
"""
)

# Record the ends of attempts and, in the same statement, claim each queue's next head:
# a batch of outcomes from different queues, one commit for all (group commit; each
# queue still has at most one job in flight, so the rules hold per queue).
# - Every write is fenced by its own lease (rule 3.10): a row is recorded only if its
#   lease is still ours and live (the lease rows locked FOR UPDATE, in queue order,
#   against a takeover) and the job still runs under `in_job_lease` (for a lost
#   worker's job recovered under a new lease, that is the dead lease's id).
# - The record carries the lease that wrote it: a "worker lost" record replaces the
#   dead lease's id by the recovering lease's, so the stale worker, if it comes back,
#   can tell that its outcome was discarded, not committed with its reply lost.
# - Where `in_claim_next` and the attempt was recorded, the queue's next head is
#   claimed as in JOB_CLAIM_HEAD: one round trip and one commit per batch while
#   workers drain queues. The head search excludes the recorded job, which this
#   statement's snapshot still sees running; it reads `rec`, so a queue's record is
#   written before its next head is claimed and the one-running-job index never sees
#   two running jobs in a queue.
# Returns one row per claimed job (or a single row of NULLs), each carrying
# `recorded`, the ids of the jobs recorded: an id missing there was rejected by its
# fence. Recorded jobs are not returned whole: after a success nobody reads them.
# - State 'parked' (docs/blocking.md) is recorded as failed and out of line.
# - Each attempt is appended to attempt_log (the last 20), except the only attempt
#   of a job that never failed: its attempted_at, attempted_by and done_at say it
#   all, and the common case writes no more than before.
JOB_FINISH: LiteralString = (
    """
WITH input AS (
    SELECT unnest(%(ids)s::bigint[]) AS in_id, unnest(%(queues)s::text[]) AS in_queue,
           unnest(%(lease_ids)s::uuid[]) AS in_lease,
           unnest(%(job_lease_ids)s::uuid[]) AS in_job_lease,
           unnest(%(states)s::text[]) AS in_state, unnest(%(errors)s::text[]) AS in_error,
           unnest(%(results)s::jsonb[]) AS in_result,
           unnest(%(backoffs)s::float8[]) AS in_backoff,
           unnest(%(claim_next)s::bool[]) AS in_claim_next
), lease AS (
    SELECT l.queue AS leased_queue, l.lease_id AS leased_id
      FROM queuetopia_leases l JOIN input ON l.queue = in_queue AND l.lease_id = in_lease
     WHERE l.scope = %(scope)s AND l.queue = ANY(%(queues)s::text[])
       AND l.locked_until > now()
     ORDER BY l.queue
       FOR UPDATE OF l
), rec AS (
    UPDATE queuetopia_jobs j
       SET state = CASE WHEN in_state = 'parked' THEN 'failed' ELSE in_state END,
           lease_id = in_lease,
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
      FROM input
     WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = in_id
       AND j.scope = %(scope)s AND j.queue = in_queue
       AND j.state = 'running' AND j.lease_id = in_job_lease
       AND (in_queue, in_lease) IN (SELECT leased_queue, leased_id FROM lease)
    RETURNING j.id, j.queue, j.state, in_lease, in_claim_next
), head AS (
    SELECT next.id AS head_id, rec.queue AS head_queue, rec.in_lease AS head_lease
      FROM rec CROSS JOIN LATERAL (
           SELECT n.id FROM queuetopia_jobs n
            WHERE n.scope = %(scope)s AND n.queue = rec.queue AND n.in_line AND n.id <> rec.id
            ORDER BY n.scheduled_at, n.seq
            LIMIT 1) AS next
     WHERE rec.in_claim_next AND rec.state = 'done'
), claimed AS ("""
    + HEAD_CLAIM
    + """    RETURNING"""
    + JOB_COLUMNS
    + """
)
SELECT (SELECT array_agg(rec.id) FROM rec) AS recorded,"""
    + JOB_COLUMNS
    + """
  FROM (SELECT 1) AS one LEFT JOIN claimed ON true
"""
)

# Append a note to the error of the attempt just recorded, fenced like JOB_FINISH.
JOB_NOTE_ERROR: LiteralString = (
    LEASE_FENCE
    + """
UPDATE queuetopia_jobs
   SET error = coalesce(error, '') || %(note)s, updated_at = now()
 WHERE id = %(id)s AND lease_id = %(lease_id)s AND EXISTS (SELECT 1 FROM lease)
"""
)

JOB_GET: LiteralString = (
    "SELECT" + JOB_COLUMNS + " FROM queuetopia_jobs WHERE scope = %(scope)s AND id = %(id)s"
)

# A page of a scope's jobs, filtered; `pattern` is an ILIKE pattern over the action,
# queue, error and params. Sensitive params are never searchable (docs/security.md):
# `hidden` maps an action to its sensitive dotted paths, and the params of such a job
# are searched by walking its keys and scalar values, leaving out each hidden path
# and all below it (lists are looked through, as queuetopia.sensitive does). Other
# jobs' params are searched as JSON text. No locks.
JOB_LIST: LiteralString = (
    "SELECT"
    + JOB_COLUMNS
    + """
  FROM queuetopia_jobs j
 WHERE scope = %(scope)s
   AND (%(queue)s::text IS NULL OR queue = %(queue)s)
   AND (%(action)s::text IS NULL OR action = %(action)s)
   AND (%(state)s::text IS NULL OR state = %(state)s)
   AND (%(pattern)s::text IS NULL OR action ILIKE %(pattern)s OR queue ILIKE %(pattern)s
        OR error ILIKE %(pattern)s
        OR CASE WHEN %(hidden)s::jsonb -> j.action IS NULL
                THEN params::text ILIKE %(pattern)s
                ELSE EXISTS (
                    WITH RECURSIVE node(path, key, value) AS (
                        SELECT ''::text, NULL::text, j.params
                      UNION ALL
                        SELECT child.path, child.key, child.value
                          FROM node CROSS JOIN LATERAL (
                               SELECT CASE WHEN node.path = '' THEN e.key
                                           ELSE node.path || '.' || e.key END,
                                      e.key, e.value
                                 FROM jsonb_each(CASE WHEN jsonb_typeof(node.value) = 'object'
                                                      THEN node.value ELSE '{}' END) AS e
                               UNION ALL
                               SELECT node.path, NULL, a.value
                                 FROM jsonb_array_elements(
                                          CASE WHEN jsonb_typeof(node.value) = 'array'
                                               THEN node.value ELSE '[]' END) AS a
                          ) AS child(path, key, value)
                         WHERE NOT (%(hidden)s::jsonb -> j.action) ? child.path
                    )
                    SELECT 1 FROM node
                     WHERE node.key ILIKE %(pattern)s
                        OR (jsonb_typeof(node.value) NOT IN ('object', 'array')
                            AND node.value #>> '{}' ILIKE %(pattern)s))
           END)
 ORDER BY id
 LIMIT %(limit)s OFFSET %(offset)s
"""
)

# The operator's record on a job or a queue: one entry appended, the last 50 kept.
# Spliced into JOB_RETRY, JOB_CANCEL and QUEUE_SET_PAUSED, whose target is `t`.
OPERATOR_ENTRY: LiteralString = """
       operator_log = (CASE WHEN jsonb_array_length(t.operator_log) >= 50
                            THEN t.operator_log - 0 ELSE t.operator_log END)
                      || jsonb_build_array(jsonb_build_object(
                             'action', %(verb)s::text, 'by', %(by)s::text, 'at', now(),
                             'reason', %(reason)s::text))"""

# Operator retry of the jobs `ids`: each is due now and keeps its place in line
# (scheduled_at only moves if it was in the future). A failed job gets its attempts
# back. A job whose unique_key another job in line holds now is left as it is (the
# unique index would refuse it; docs/unique-jobs.md).
JOB_RETRY: LiteralString = (
    """
UPDATE queuetopia_jobs t
   SET state = 'pending',
       attempts = CASE WHEN state = 'pending' THEN attempts ELSE 0 END,
       scheduled_at = least(scheduled_at, now()), next_attempt_at = NULL,
       done_at = NULL, updated_at = now(),"""
    + OPERATOR_ENTRY
    + """
 WHERE scope = %(scope)s AND id = ANY(%(ids)s::bigint[])
   AND state IN ('pending', 'failed', 'cancelled')
   AND (unique_key IS NULL OR in_line OR NOT EXISTS (
        SELECT 1 FROM queuetopia_jobs twin
         WHERE twin.scope = t.scope AND twin.queue = t.queue
           AND twin.unique_key = t.unique_key AND twin.in_line))
RETURNING"""
    + JOB_COLUMNS
)

# Operator cancel of the jobs `ids`: each leaves its line, its queue moves on.
# Running jobs are refused.
JOB_CANCEL: LiteralString = (
    """
UPDATE queuetopia_jobs t
   SET state = 'cancelled', done_at = now(), updated_at = now(),
       error = 'cancelled: ' || %(reason)s || coalesce(E'\\nlast error: ' || error, ''),"""
    + OPERATOR_ENTRY
    + """
 WHERE scope = %(scope)s AND id = ANY(%(ids)s::bigint[]) AND state IN ('pending', 'failed')
RETURNING"""
    + JOB_COLUMNS
)

# The jobs an operator selection names (docs/operations.md): queue glob (as a LIKE
# pattern), states, action, changed since; in queue order, at most `limit`.
JOB_SELECT: LiteralString = (
    "SELECT"
    + JOB_COLUMNS
    + """
  FROM queuetopia_jobs
 WHERE scope = %(scope)s
   AND (%(pattern)s::text IS NULL OR queue LIKE %(pattern)s)
   AND state = ANY(%(states)s::text[])
   AND (%(action)s::text IS NULL OR action = %(action)s)
   AND (%(since)s::timestamptz IS NULL OR updated_at >= %(since)s)
   AND (%(since_secs)s::float8 IS NULL
        OR updated_at >= now() - make_interval(secs => %(since_secs)s))
 ORDER BY queue, scheduled_at, seq
 LIMIT %(limit)s
"""
)

# After an operator change, make the queues due now so a worker re-reads their
# heads. Takes the queue row locks, in name order like JOB_INSERT_MANY: an operator
# call may wait for an open enqueue, never deadlock with one.
QUEUE_TOUCH: LiteralString = """
WITH locked AS (
    SELECT queue AS locked_queue FROM queuetopia_queues
     WHERE scope = %(scope)s AND queue = ANY(%(queues)s::text[])
     ORDER BY queue
       FOR NO KEY UPDATE
)
UPDATE queuetopia_queues q SET ready_at = least(ready_at, now())
  FROM locked
 WHERE q.scope = %(scope)s AND q.queue = locked_queue
"""

# Pause or resume one queue (creating its row: a queue may be paused before its
# first job), recording who did it. Returns the queue if it changed.
QUEUE_SET_PAUSED: LiteralString = (
    """
INSERT INTO queuetopia_queues AS t (scope, queue, paused)
VALUES (%(scope)s, %(queue)s, %(paused)s)
ON CONFLICT (scope, queue) DO UPDATE
   SET paused = EXCLUDED.paused,
       ready_at = CASE WHEN EXCLUDED.paused THEN t.ready_at ELSE least(t.ready_at, now()) END,"""
    + OPERATOR_ENTRY
    + """
 WHERE t.paused IS DISTINCT FROM EXCLUDED.paused
RETURNING t.queue
"""
)
# One row per queue of the scope with its head, lease and count of jobs in line, and
# its failed jobs (those the queue moved past, counted from the failed-jobs index).
QUEUE_LIST: LiteralString = """
SELECT q.queue, q.paused, now() AS db_now,
       EXISTS (SELECT 1 FROM queuetopia_jobs r
                WHERE r.scope = q.scope AND r.queue = q.queue AND r.state = 'running')
           AS has_running,
       (SELECT count(*) FROM queuetopia_jobs c
         WHERE c.scope = q.scope AND c.queue = q.queue AND c.in_line) AS pending,
       l.owner AS locked_by, l.locked_until,
       (SELECT to_jsonb(h) FROM queuetopia_jobs h
         WHERE h.scope = q.scope AND h.queue = q.queue AND h.in_line
         ORDER BY h.scheduled_at, h.seq LIMIT 1) AS head,
       q.operator_log, coalesce(f.failed, 0) AS failed, f.oldest_failed_at
  FROM queuetopia_queues q
  LEFT JOIN queuetopia_leases l
    ON l.scope = q.scope AND l.queue = q.queue AND l.locked_until > now()
  LEFT JOIN (SELECT f.queue AS failed_queue, count(*) AS failed,
                    min(f.done_at) AS oldest_failed_at
               FROM queuetopia_jobs f
              WHERE f.scope = %(scope)s AND f.state = 'failed'
              GROUP BY f.queue) AS f
    ON f.failed_queue = q.queue
 WHERE q.scope = %(scope)s
 ORDER BY q.queue
"""

# The queues an operator selection names (a LIKE pattern), in name order.
QUEUE_SELECT: LiteralString = """
SELECT queue, paused FROM queuetopia_queues
 WHERE scope = %(scope)s AND queue LIKE %(pattern)s
 ORDER BY queue
"""

# Only one worker of a scope prunes at a time; the lock ends with the transaction.
PRUNE_LOCK: LiteralString = """
SELECT pg_try_advisory_xact_lock(%(key)s, hashtext(%(scope)s)) AS locked
"""

# Delete finished jobs in small batches so no prune holds many locks or a long xmin.
JOB_PRUNE_BATCH: LiteralString = """
DELETE FROM queuetopia_jobs
 WHERE id IN (SELECT id FROM queuetopia_jobs
               WHERE scope = %(scope)s AND state IN ('done', 'cancelled')
                 AND done_at < now() - make_interval(secs => %(older_than)s)
               LIMIT %(batch)s)
"""

# Register a periodic job at its current tick (no backfill of ticks before it existed).
PERIODIC_REGISTER: LiteralString = """
INSERT INTO queuetopia_periodic (scope, name, last_tick)
VALUES (%(scope)s, %(name)s, %(tick)s)
ON CONFLICT (scope, name) DO NOTHING
"""

# Lock a periodic's row for the transaction that enqueues its due ticks; a worker that
# finds it locked leaves the work to the one holding it (exactly once per tick).
PERIODIC_LOCK: LiteralString = """
SELECT last_tick, now() AS db_now FROM queuetopia_periodic
 WHERE scope = %(scope)s AND name = %(name)s
   FOR UPDATE SKIP LOCKED
"""

PERIODIC_ADVANCE: LiteralString = """
UPDATE queuetopia_periodic SET last_tick = %(tick)s WHERE scope = %(scope)s AND name = %(name)s
"""

DB_NOW: LiteralString = "SELECT now() AS db_now"

# For metrics: how many queues of the scope are blocked, and for how long the oldest
# blocked head has been failing (the number to alert on).
QUEUE_BLOCKED_STATS: LiteralString = """
SELECT count(*) AS blocked,
       coalesce(extract(epoch FROM max(now() - h.failing_since)), 0)::float8 AS oldest
  FROM queuetopia_queues q
 CROSS JOIN LATERAL (
       SELECT j.failing_since, j.state FROM queuetopia_jobs j
        WHERE j.scope = q.scope AND j.queue = q.queue AND j.in_line
        ORDER BY j.scheduled_at, j.seq LIMIT 1) h
 WHERE q.scope = %(scope)s AND NOT q.paused
   AND (h.failing_since IS NOT NULL OR h.state = 'failed')
"""

# -- reads for the dashboard (docs/dashboard.md) ------------------------------------

# The live leases of the scope: which node holds which queue until when. A lease whose
# time ran out is left out, as it no longer holds its queue. No locks.
LEASE_LIST: LiteralString = """
SELECT queue, owner, token, acquired_at, locked_until, now() AS db_now
  FROM queuetopia_leases
 WHERE scope = %(scope)s AND locked_until > now()
 ORDER BY owner, queue
"""

# A queue's line in the order it runs, head first, paged: walks the queuetopia_jobs_line
# index, never the queue's finished jobs. No locks.
QUEUE_LINE: LiteralString = (
    "SELECT"
    + JOB_COLUMNS
    + """
  FROM queuetopia_jobs
 WHERE scope = %(scope)s AND queue = %(queue)s AND in_line
 ORDER BY scheduled_at, seq
 LIMIT %(limit)s OFFSET %(offset)s
"""
)

# Jobs done and failed per minute over the last `minutes` minutes (one row per minute,
# oldest first), for the whole scope or one queue. Computed from the jobs alone, so
# the worker pays nothing for it:
# - done: jobs whose state is done, by done_at (the queuetopia_jobs_finished index);
# - failed: jobs whose latest attempt failed, at the minute it ended: exhausted jobs
#   by done_at (the queuetopia_jobs_failed index), and retrying heads by updated_at
#   (one index probe per queue, as only a head runs). A job that failed several times
#   counts once, at its latest failure, and not at all once it succeeds.
# No locks.
JOB_COUNTS_PER_MINUTE: LiteralString = """
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
"""


def compact(statement: str) -> str:
    """`statement` with each run of whitespace outside string literals made one space
    (kept at its ends, for the fragments joined at run time). psycopg caches a query's
    conversion only if it is shorter than 4 KiB; the indentation kept JOB_FINISH over
    that, and converting it again at every batch cost a worker about 3 % of its CPU."""
    out: list[str] = []
    i, n, space = 0, len(statement), False
    while i < n:
        ch = statement[i]
        if ch.isspace():
            space, i = True, i + 1
            continue
        if space:
            out.append(" ")
            space = False
        if ch == "'":  # a literal, '' inside it included: copied as it is
            end = i + 1
            while (end := statement.index("'", end) + 1) < n and statement[end] == "'":
                end += 1
            out.append(statement[i:end])
            i = end
            continue
        out.append(ch)
        i += 1
    if space:
        out.append(" ")
    return "".join(out)


def _compact_all() -> None:
    for name, value in list(globals().items()):
        if name.isupper() and isinstance(value, str):
            globals()[name] = compact(value)


_compact_all()
