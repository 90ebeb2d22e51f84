-- Set (create or replace) the rate limit `name` of a scope (docs/flow-control.md). A
-- limit set again starts with full budgets: its buckets go (the cascade of a replaced
-- key would keep them, so they are deleted first).
WITH gone AS (
    DELETE FROM queuetopia_buckets WHERE scope = %(scope)s AND name = %(name)s
)
INSERT INTO queuetopia_limits AS l (scope, name, queues, pattern, shared, count, period,
                                    burst, set_by, set_at)
VALUES (%(scope)s, %(name)s, %(queues)s, %(pattern)s, %(shared)s, %(count)s, %(period)s,
        %(burst)s, %(by)s, now())
ON CONFLICT (scope, name) DO UPDATE
   SET queues = EXCLUDED.queues, pattern = EXCLUDED.pattern, shared = EXCLUDED.shared,
       count = EXCLUDED.count, period = EXCLUDED.period, burst = EXCLUDED.burst,
       set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at
RETURNING scope, name, queues, shared, count, period, burst, set_by, set_at
