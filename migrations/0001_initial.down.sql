-- Removes everything version 1 created.
DROP FUNCTION IF EXISTS queuetopia_queue_refresh(text, text);
DROP FUNCTION IF EXISTS queuetopia_head_ready_at(text, text);
DROP SEQUENCE IF EXISTS queuetopia_fence;
DROP TABLE IF EXISTS queuetopia_leases;
DROP TABLE IF EXISTS queuetopia_jobs;
DROP TABLE IF EXISTS queuetopia_queues;
DROP TABLE IF EXISTS queuetopia_versions;
