-- Flow control (docs/flow-control.md).
--
-- A cancel asked of a running job is kept on its row until its attempt ends: who
-- asked, when and why ({"by", "at", "reason"}). The step that records the attempt
-- reads it, so the job ends cancelled (unless it is done first) whichever worker
-- records it, and however late the request reached it.
ALTER TABLE queuetopia_jobs ADD COLUMN IF NOT EXISTS cancel_request jsonb;

-- Jobs that wait for other jobs: `depends_on` names the jobs (of the same scope) that
-- must be done before this one may start. `wake` lists the queues whose heads wait for
-- this job: the worker step that finds such a head writes it here, and the step that
-- records this job done notifies them (docs/flow-control.md).
ALTER TABLE queuetopia_jobs ADD COLUMN IF NOT EXISTS depends_on bigint[];
ALTER TABLE queuetopia_jobs ADD COLUMN IF NOT EXISTS wake text[];

-- Rate limits: a limit covers the queues whose name matches `pattern` (a LIKE
-- pattern, from the glob `queues`); each covered queue has a budget of its own, or,
-- `shared`, all of them draw from one. A budget is a token bucket: `burst` tokens at
-- most, refilled at count/period a second; a job start takes one token of every
-- limit covering its queue. The buckets are created full when first drawn from; one
-- bucket per queue (key: the queue) or, shared, one for the limit (key: '').
CREATE TABLE IF NOT EXISTS queuetopia_limits (
    scope       text        NOT NULL CHECK (char_length(scope) BETWEEN 1 AND 255),
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    queues      text        NOT NULL CHECK (char_length(queues) BETWEEN 1 AND 255),
    pattern     text        NOT NULL,
    shared      boolean     NOT NULL DEFAULT false,
    count       integer     NOT NULL CHECK (count >= 1),
    period      double precision NOT NULL CHECK (period > 0 AND period <= 31536000),
    burst       integer     NOT NULL CHECK (burst >= 1),
    set_by      text,
    set_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, name)
);

CREATE TABLE IF NOT EXISTS queuetopia_buckets (
    scope       text        NOT NULL,
    name        text        NOT NULL,
    key         text        NOT NULL,
    tokens      double precision NOT NULL,
    refilled_at timestamptz NOT NULL,
    PRIMARY KEY (scope, name, key),
    FOREIGN KEY (scope, name) REFERENCES queuetopia_limits ON DELETE CASCADE
);

-- Called by a worker's step (queuetopia/db/sql/job_step.sql) with the heads it is
-- about to claim in order, longest waiting first; only when the scope has a limit.
-- Each head of a covered queue takes a token of every limit covering it, or none
-- (it waits); returns the heads held back: {job id: [queue, seconds until it may
-- start]}. The buckets drawn from are locked in (name, key) order, so two steps never
-- deadlock on them, and stay locked until the step commits: the budget holds across
-- every worker.
CREATE OR REPLACE FUNCTION queuetopia_rate_take(p_scope text, p_jobs bigint[], p_queues text[])
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    -- What each head draws from, one element per (head, limit covering its queue).
    v_job bigint[];
    v_name text[];
    v_key text[];
    v_rate double precision[];
    v_burst integer[];
    v_held jsonb := '{}';
    v_ok boolean;
    v_wait double precision;
BEGIN
    SELECT array_agg(h.job), array_agg(l.name),
           array_agg(CASE WHEN l.shared THEN '' ELSE h.queue END),
           array_agg(l.count / l.period), array_agg(l.burst)
      INTO v_job, v_name, v_key, v_rate, v_burst
      FROM unnest(p_jobs, p_queues) AS h(job, queue)
      JOIN queuetopia_limits l ON l.scope = p_scope AND h.queue LIKE l.pattern;
    IF v_job IS NULL THEN
        RETURN v_held;
    END IF;
    INSERT INTO queuetopia_buckets (scope, name, key, tokens, refilled_at)
    SELECT DISTINCT p_scope, d.name, d.key, d.burst, now()
      FROM unnest(v_name, v_key, v_burst) AS d(name, key, burst)
     ORDER BY 2, 3
    ON CONFLICT (scope, name, key) DO NOTHING;
    PERFORM 1 FROM queuetopia_buckets b
     WHERE b.scope = p_scope
       AND (b.name, b.key) IN (SELECT * FROM unnest(v_name, v_key))
     ORDER BY b.name, b.key
       FOR UPDATE;
    UPDATE queuetopia_buckets b
       SET tokens = least(d.burst, b.tokens + d.rate * greatest(
                       extract(epoch FROM now() - b.refilled_at), 0)),
           refilled_at = greatest(now(), b.refilled_at)
      FROM (SELECT DISTINCT * FROM unnest(v_name, v_key, v_rate, v_burst)) AS d(name, key, rate, burst)
     WHERE b.scope = p_scope AND b.name = d.name AND b.key = d.key;
    FOR i IN 1 .. array_length(p_jobs, 1) LOOP
        SELECT bool_and(b.tokens >= 1),
               max(CASE WHEN b.tokens < 1 THEN (1 - b.tokens) / d.rate END)
          INTO v_ok, v_wait
          FROM unnest(v_job, v_name, v_key, v_rate) AS d(job, name, key, rate)
          JOIN queuetopia_buckets b ON b.scope = p_scope AND b.name = d.name AND b.key = d.key
         WHERE d.job = p_jobs[i];
        IF v_ok THEN
            UPDATE queuetopia_buckets b SET tokens = b.tokens - 1
              FROM unnest(v_job, v_name, v_key) AS d(job, name, key)
             WHERE d.job = p_jobs[i] AND b.scope = p_scope AND b.name = d.name
               AND b.key = d.key;
        ELSIF v_ok IS NOT NULL THEN
            v_held := v_held || jsonb_build_object(
                p_jobs[i]::text, jsonb_build_array(p_queues[i], v_wait));
        END IF;
    END LOOP;
    RETURN v_held;
END
$$;

-- The jobs among `p_ids` (what a head depends on) that are not done: NULL once all
-- are. A function, so that a step plans no subquery for the heads that depend on
-- nothing (nearly all of them).
CREATE OR REPLACE FUNCTION queuetopia_waits(p_scope text, p_ids bigint[])
RETURNS bigint[] LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN nullif(ARRAY(
        SELECT w FROM unnest(p_ids) AS w
         WHERE NOT EXISTS (SELECT 1 FROM queuetopia_jobs d
                            WHERE d.id = w AND d.scope = p_scope AND d.state = 'done')
         ORDER BY w), '{}');
END
$$;

INSERT INTO queuetopia_versions (version, name) VALUES (6, 'flow_control')
ON CONFLICT (version) DO NOTHING;
