DROP INDEX IF EXISTS queuetopia_jobs_unique;
ALTER TABLE queuetopia_queues DROP COLUMN IF EXISTS operator_log;
ALTER TABLE queuetopia_jobs DROP COLUMN IF EXISTS operator_log;
ALTER TABLE queuetopia_jobs DROP COLUMN IF EXISTS attempt_log;
ALTER TABLE queuetopia_jobs DROP COLUMN IF EXISTS unique_key;
ALTER TABLE queuetopia_jobs ADD CONSTRAINT queuetopia_jobs_scope_queue_fkey
    FOREIGN KEY (scope, queue) REFERENCES queuetopia_queues (scope, queue);
DELETE FROM queuetopia_versions WHERE version = 4;
