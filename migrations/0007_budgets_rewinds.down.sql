-- Undo 0007: the step's draw as 0006 made it (budgets are no longer pruned then), and
-- no function applies a step's rewinds or takes its leases.
DROP FUNCTION IF EXISTS queuetopia_rewinds_apply(text, jsonb, text[], jsonb, text[]);
DROP FUNCTION IF EXISTS queuetopia_leases_take(text, text, float8, text[], text[]);
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

-- A head's dependencies as 0006 read them (STABLE: as of the step's start).
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

DELETE FROM queuetopia_versions WHERE version = 7;
