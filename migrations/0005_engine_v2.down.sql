-- Undo 0005: the engine v2 columns and functions go, and running jobs are unique
-- per queue again (the index fails to build if a queue has two: it never does).
DROP TRIGGER IF EXISTS queuetopia_lease_taken_v1 ON queuetopia_leases;
DROP FUNCTION IF EXISTS queuetopia_lease_taken_v1();
DROP FUNCTION IF EXISTS queuetopia_queue_settle(text, text, timestamptz, bigint, bigint);
DROP FUNCTION IF EXISTS queuetopia_lock_key(text, text);
DROP INDEX IF EXISTS queuetopia_jobs_running;
DROP SEQUENCE IF EXISTS queuetopia_seq;
CREATE UNIQUE INDEX IF NOT EXISTS queuetopia_jobs_one_running ON queuetopia_jobs (scope, queue)
    WHERE state = 'running';
ALTER TABLE queuetopia_queues
    DROP COLUMN IF EXISTS rewinds,
    DROP COLUMN IF EXISTS rewind_at,
    DROP COLUMN IF EXISTS rewind_seq;
ALTER TABLE queuetopia_leases
    DROP COLUMN IF EXISTS floor_at,
    DROP COLUMN IF EXISTS floor_seq,
    DROP COLUMN IF EXISTS rewinds_seen,
    DROP COLUMN IF EXISTS released,
    DROP COLUMN IF EXISTS takeover;
DELETE FROM queuetopia_versions WHERE version = 5;
