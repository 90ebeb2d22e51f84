-- Queuetopia schema, version 1.
--
-- queuetopia_queues  one row per (scope, queue): the per-queue sequence that makes
--                    queue order equal commit order, the pause flag, and ready_at,
--                    the earliest time the queue may need a worker (a hint that is
--                    only ever early, never late; workers correct it).
-- queuetopia_jobs    the jobs; `in_line` marks the jobs that still hold a place in
--                    their queue (the head is the first of them).
-- queuetopia_leases  who holds which queue until when; written only by workers so
--                    that no producer transaction can ever delay a heartbeat.

CREATE TABLE IF NOT EXISTS queuetopia_versions (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE queuetopia_queues (
    scope     text        NOT NULL CHECK (char_length(scope) BETWEEN 1 AND 255),
    queue     text        NOT NULL CHECK (char_length(queue) BETWEEN 1 AND 255),
    last_seq  bigint      NOT NULL DEFAULT 0,
    paused    boolean     NOT NULL DEFAULT false,
    ready_at  timestamptz,
    PRIMARY KEY (scope, queue)
);

-- Candidate search: due queues of a scope, longest waiting first.
CREATE INDEX queuetopia_queues_ready ON queuetopia_queues (scope, ready_at)
    WHERE ready_at IS NOT NULL;

CREATE TABLE queuetopia_jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope           text        NOT NULL,
    queue           text        NOT NULL,
    seq             bigint      NOT NULL,
    action          text        NOT NULL CHECK (char_length(action) BETWEEN 1 AND 255),
    params          jsonb       NOT NULL DEFAULT '{}',
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    on_exhausted    text        NOT NULL DEFAULT 'skip' CHECK (on_exhausted IN ('skip', 'block')),
    in_line         boolean     GENERATED ALWAYS AS (
                        state IN ('pending', 'running')
                        OR (state = 'failed' AND on_exhausted = 'block')) STORED,
    attempts        integer     NOT NULL DEFAULT 0,
    max_attempts    integer     NOT NULL CHECK (max_attempts >= 1),
    timeout         double precision NOT NULL CHECK (timeout > 0),
    max_backoff     double precision NOT NULL CHECK (max_backoff >= 0),
    scheduled_at    timestamptz NOT NULL,
    attempted_at    timestamptz,
    attempted_by    text,
    next_attempt_at timestamptz,
    failing_since   timestamptz,
    done_at         timestamptz,
    error           text,
    result          jsonb,
    lease_id        uuid,
    inserted_at     timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (scope, queue) REFERENCES queuetopia_queues (scope, queue)
);

-- The head of a queue is found by this index, never by sorting the queue. No other
-- index leads with (scope, queue): the planner must never walk a queue's finished jobs
-- (seq is unique per queue by construction: it is handed out under the queue row lock).
CREATE INDEX queuetopia_jobs_line ON queuetopia_jobs (scope, queue, scheduled_at, seq)
    WHERE in_line;

-- Backstop for rule 2 of docs/guarantees.md: whatever a worker does, at most one running job per queue.
CREATE UNIQUE INDEX queuetopia_jobs_one_running ON queuetopia_jobs (scope, queue)
    WHERE state = 'running';

-- Listings and pruning. Every index costs an insert on each state change of every
-- job, so only failed jobs (which need an operator) get one of their own; listings of
-- other states use the line index (unfinished jobs) or the finished index below.
CREATE INDEX queuetopia_jobs_failed ON queuetopia_jobs (scope, id) WHERE state = 'failed';
CREATE INDEX queuetopia_jobs_finished ON queuetopia_jobs (scope, done_at)
    WHERE state IN ('done', 'cancelled');

CREATE TABLE queuetopia_leases (
    scope        text        NOT NULL,
    queue        text        NOT NULL,
    lease_id     uuid        NOT NULL,
    token        bigint      NOT NULL,
    owner        text        NOT NULL,
    acquired_at  timestamptz NOT NULL,
    locked_until timestamptz NOT NULL,
    PRIMARY KEY (scope, queue)
) WITH (fillfactor = 70);

-- Monotonic fencing token handed to every new lease, for systems outside PostgreSQL.
CREATE SEQUENCE queuetopia_fence;

-- The time at which a queue's head becomes runnable, from its head row alone:
-- NULL when nothing can run without an operator (no head, or an exhausted head
-- that blocks), now() for a running head (only a lost worker leaves one behind).
CREATE FUNCTION queuetopia_head_ready_at(p_scope text, p_queue text)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT CASE
               WHEN j.state = 'failed' THEN NULL
               WHEN j.state = 'running' THEN now()
               ELSE greatest(j.scheduled_at, coalesce(j.next_attempt_at, j.scheduled_at))
           END
      FROM queuetopia_jobs j
     WHERE j.scope = p_scope AND j.queue = p_queue AND j.in_line
     ORDER BY j.scheduled_at, j.seq
     LIMIT 1
$$;

-- Recompute a queue's ready_at hint, unless a producer holds the queue row (an open
-- enqueue transaction). Skipping is safe: producers only ever lower ready_at, so the
-- hint stays early and a worker looks again. Waiting is not: a long producer
-- transaction would stall the worker. Each statement of a plpgsql function takes a
-- new snapshot, so jobs committed before the row lock was granted are seen.
-- Returns whether the hint was refreshed.
CREATE FUNCTION queuetopia_queue_refresh(p_scope text, p_queue text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM queuetopia_queues
      WHERE scope = p_scope AND queue = p_queue
        FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE queuetopia_queues
       SET ready_at = queuetopia_head_ready_at(p_scope, p_queue)
     WHERE scope = p_scope AND queue = p_queue;
    RETURN true;
END
$$;

ALTER TABLE queuetopia_jobs SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE queuetopia_leases SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE queuetopia_queues SET (autovacuum_vacuum_scale_factor = 0.02);

INSERT INTO queuetopia_versions (version, name) VALUES (1, 'initial')
ON CONFLICT (version) DO NOTHING;
