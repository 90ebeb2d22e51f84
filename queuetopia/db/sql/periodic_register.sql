-- Register a periodic job at its current tick (no backfill of ticks before it existed).
INSERT INTO queuetopia_periodic (scope, name, last_tick)
VALUES (%(scope)s, %(name)s, %(tick)s)
ON CONFLICT (scope, name) DO NOTHING
