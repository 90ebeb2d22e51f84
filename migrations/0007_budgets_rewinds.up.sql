-- Functions a worker's step calls: the draw from the rate limits' budgets, made safe
-- for their pruning; the application of rewinds, moved out of the step; a head's
-- dependencies, read as they are when the step reaches it.
--
-- Budgets pruned (docs/flow-control.md): a bucket full again is the same budget as
-- no bucket (a bucket is made full when first drawn from), so the worker's
-- housekeeping and `prune` delete them; a limit on a glob would otherwise keep one
-- row per queue it ever covered. A step drawing from a bucket takes its lock after
-- making it if it was missing: a prune that deleted it in between (its delete waits
-- for no step) leaves the step without the row, so the step makes it again under its
-- own lock before drawing. Otherwise as in 0006.
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
    -- A bucket the prune deleted after the insert above saw it (it was full) is gone
    -- from the lock: made again, full, and ours until the step commits.
    INSERT INTO queuetopia_buckets (scope, name, key, tokens, refilled_at)
    SELECT DISTINCT p_scope, d.name, d.key, d.burst, now()
      FROM unnest(v_name, v_key, v_burst) AS d(name, key, burst)
     ORDER BY 2, 3
    ON CONFLICT (scope, name, key) DO NOTHING;
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

-- The rewinds a worker's step applies (queuetopia/db/sql/job_step.sql, docs/design.md
-- "The floor"): the leases that saw them record it, their floors brought back to the
-- rewind the search started at (`p_seen`: {queue: [lease, rewinds, [at, seq] or
-- null]}), and the queues' rewind positions cleared (`p_clear`: {queue: rewinds}),
-- unless a producer or an operator holds the queue row (SKIP LOCKED: a worker never
-- waits for them; the position stays, which only makes the next rewind search from
-- further back). Rare, so the step calls this only when there are some: as parts of
-- the step's own statement, these updates were made ready at every step, their
-- tables and indexes opened, whether they wrote or not (docs/design.md, "What a step
-- costs"). Each statement here reads with a snapshot of its own, taken after the
-- step's: a lease taken over since, or a rewind counted since, is left as it is.
CREATE OR REPLACE FUNCTION queuetopia_rewinds_apply(p_scope text, p_seen jsonb,
                                                    p_seen_queues text[], p_clear jsonb,
                                                    p_clear_queues text[])
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF p_seen_queues <> '{}' THEN
        UPDATE queuetopia_leases l
           SET (rewinds_seen, floor_at, floor_seq) = (
               SELECT (p_seen -> l.queue ->> 1)::bigint,
                      CASE WHEN (r_at, r_seq) < (l.floor_at, l.floor_seq) THEN r_at
                           ELSE l.floor_at END,
                      CASE WHEN (r_at, r_seq) < (l.floor_at, l.floor_seq) THEN r_seq
                           ELSE l.floor_seq END
                 FROM (SELECT (p_seen -> l.queue #>> '{2,0}')::timestamptz,
                              (p_seen -> l.queue #>> '{2,1}')::bigint) AS r(r_at, r_seq))
         WHERE l.scope = p_scope AND l.queue = ANY(p_seen_queues)
           AND l.lease_id = (p_seen -> l.queue ->> 0)::uuid
           AND l.rewinds_seen < (p_seen -> l.queue ->> 1)::bigint;
    END IF;
    IF p_clear_queues <> '{}' THEN
        UPDATE queuetopia_queues q SET rewind_at = NULL, rewind_seq = NULL
         WHERE q.scope = p_scope AND q.queue = ANY(p_clear_queues)
           AND q.rewinds = (p_clear ->> q.queue)::bigint
           AND q.ctid = ANY(ARRAY(
               SELECT c.ctid FROM queuetopia_queues c
                WHERE c.scope = p_scope AND c.rewind_at IS NOT NULL
                  AND c.queue = ANY(p_clear_queues)
                  FOR NO KEY UPDATE OF c SKIP LOCKED));
    END IF;
    RETURN true;
END
$$;

-- A head's dependencies, read as they are when the step reaches the head
-- (docs/flow-control.md): VOLATILE, so its query reads with a snapshot of its own,
-- taken then, which sees the jobs the same step has just recorded done. STABLE, it
-- read them as of the step's start: a head whose last dependency finished in the
-- step that looked at it waited for one more step (found by the model of the rules,
-- tests/test_model.py). Otherwise as in 0006.
CREATE OR REPLACE FUNCTION queuetopia_waits(p_scope text, p_ids bigint[])
RETURNS bigint[] LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN nullif(ARRAY(
        SELECT w FROM unnest(p_ids) AS w
         WHERE NOT EXISTS (SELECT 1 FROM queuetopia_jobs d
                            WHERE d.id = w AND d.scope = p_scope AND d.state = 'done')
         ORDER BY w), '{}');
END
$$;

-- A worker's step takes the leases of `p_queues` (job_step.sql, `chosen`: queues due,
-- free, and tried first with the step's advisory lock), or finds again what a step of
-- `p_owner` retried after its reply was lost (`p_retry`) took: an expired or released
-- lease is taken over, a live one, another worker's, is left alone. Returns
-- {queue: [lease, token, floor_at, floor_seq, rewinds_seen, takeover]} for the
-- leases taken. A rewind before the floor comes into the floor the row keeps, as the
-- step's search starts there: a step cannot mark it seen in a row it takes, and the
-- search clears the queue's rewind position. A function, called only by the steps
-- that take a queue: as part of the step's own statement, the insert was made ready at
-- every step, its table and indexes opened (docs/design.md, "What a step costs"). Its
-- statement reads with a snapshot of its own, taken after the step's; the conflict is
-- decided on the rows as they are, as an INSERT ... ON CONFLICT always does.
CREATE OR REPLACE FUNCTION queuetopia_leases_take(p_scope text, p_owner text, p_ttl float8,
                                                  p_queues text[], p_retry text[])
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_taken jsonb;
BEGIN
    WITH took AS (
        INSERT INTO queuetopia_leases AS l (scope, queue, lease_id, token, owner,
                                            acquired_at, locked_until)
        SELECT p_scope, cq, gen_random_uuid(), nextval('queuetopia_fence'), p_owner,
               now(), now() + make_interval(secs => p_ttl)
          FROM unnest(p_queues) AS c(cq)
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
               released = false,
               (floor_at, floor_seq) = (
                   SELECT CASE WHEN w THEN q.rewind_at ELSE l.floor_at END,
                          CASE WHEN w THEN q.rewind_seq ELSE l.floor_seq END
                     FROM queuetopia_queues q
                    CROSS JOIN LATERAL (
                          SELECT l.locked_until <= now() AND q.rewinds > l.rewinds_seen
                                 AND (q.rewind_at, q.rewind_seq)
                                     < (l.floor_at, l.floor_seq)) AS r(w)
                    WHERE q.scope = l.scope AND q.queue = l.queue)
         WHERE l.locked_until <= now()
            OR (l.owner = EXCLUDED.owner AND l.queue = ANY(p_retry))
        RETURNING l.queue, l.lease_id, l.token, l.floor_at, l.floor_seq, l.rewinds_seen,
                  l.takeover
    )
    SELECT coalesce(jsonb_object_agg(queue, jsonb_build_array(
               lease_id, token, floor_at, floor_seq, rewinds_seen, takeover)), '{}')
      INTO v_taken
      FROM took;
    RETURN v_taken;
END
$$;

INSERT INTO queuetopia_versions (version, name) VALUES (7, 'budgets_rewinds')
ON CONFLICT (version) DO NOTHING;
