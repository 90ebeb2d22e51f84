-- Periodic jobs: the last tick enqueued per (scope, name), so that each tick is
-- enqueued exactly once across all workers, and missed ticks are caught up.
CREATE TABLE queuetopia_periodic (
    scope     text        NOT NULL,
    name      text        NOT NULL,
    last_tick timestamptz NOT NULL,
    PRIMARY KEY (scope, name)
);

INSERT INTO queuetopia_versions (version, name) VALUES (2, 'periodic')
ON CONFLICT (version) DO NOTHING;
