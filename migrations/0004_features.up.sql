-- Unique jobs, attempt history and the operator's record (docs/features.md).
--
-- unique_key    a producer's key: while a job with that key is in line in its queue,
--               enqueueing another returns the existing one (the partial unique index
--               below refuses the twin, race-safe under concurrent producers).
-- attempt_log   the last attempts (start, end, node, outcome, error), appended by the
--               statement that records an attempt; a job whose only attempt succeeded
--               writes nothing here (its attempted_at/done_at say it all).
-- operator_log  who retried or cancelled a job, when and why.
ALTER TABLE queuetopia_jobs ADD COLUMN unique_key text
    CHECK (char_length(unique_key) BETWEEN 1 AND 255);
ALTER TABLE queuetopia_jobs ADD COLUMN attempt_log jsonb NOT NULL DEFAULT '[]';
ALTER TABLE queuetopia_jobs ADD COLUMN operator_log jsonb NOT NULL DEFAULT '[]';

-- who paused or resumed a queue, when and why.
ALTER TABLE queuetopia_queues ADD COLUMN operator_log jsonb NOT NULL DEFAULT '[]';

-- One job in line per (scope, queue, unique_key). A finished, cancelled or parked
-- job frees its key.
CREATE UNIQUE INDEX queuetopia_jobs_unique ON queuetopia_jobs (scope, queue, unique_key)
    WHERE unique_key IS NOT NULL AND in_line;

-- The foreign key from jobs to their queue row goes: every job is written by the one
-- enqueue statement (JOB_INSERT_MANY), which upserts the job's queue row in the same
-- statement, and no statement deletes queue rows. Its per-row check was half the cost
-- of a bulk enqueue (docs/enqueue.md).
ALTER TABLE queuetopia_jobs DROP CONSTRAINT IF EXISTS queuetopia_jobs_scope_queue_fkey;

INSERT INTO queuetopia_versions (version, name) VALUES (4, 'features')
ON CONFLICT (version) DO NOTHING;
