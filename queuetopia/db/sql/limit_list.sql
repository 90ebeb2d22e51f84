-- The rate limits of a scope, by name (docs/flow-control.md).
SELECT scope, name, queues, shared, count, period, burst, set_by, set_at
  FROM queuetopia_limits
 WHERE scope = %(scope)s
 ORDER BY name
