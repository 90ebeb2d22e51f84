-- Remove the rate limit `name` of a scope, and its budgets (the foreign key cascades).
DELETE FROM queuetopia_limits WHERE scope = %(scope)s AND name = %(name)s
RETURNING scope, name, queues, shared, count, period, burst, set_by, set_at
