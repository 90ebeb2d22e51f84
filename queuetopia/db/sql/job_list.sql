-- A page of a scope's jobs, filtered; `pattern` is an ILIKE pattern over the action,
-- queue, error and params. Sensitive params are never searchable (docs/security.md):
-- `hidden` maps an action to its sensitive dotted paths, and the params of such a job
-- are searched by walking its keys and scalar values, leaving out each hidden path
-- and all below it (lists are looked through, as queuetopia.sensitive does). Other
-- jobs' params are searched as JSON text. No locks.
-- The job columns are written out as queuetopia/db/queries.py's JOB_COLUMNS lists them
-- (an empty log comes back as NULL); tests/test_queries.py checks every copy.
SELECT id, scope, queue, seq, action, params, state, on_exhausted, attempts, max_attempts,
       timeout, max_backoff, scheduled_at, attempted_at, attempted_by, next_attempt_at,
       failing_since, done_at, error, result, lease_id, inserted_at, updated_at, meta,
       unique_key, depends_on, nullif(attempt_log, '[]') AS attempt_log,
       nullif(operator_log, '[]') AS operator_log
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
