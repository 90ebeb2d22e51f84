-- Undo 0006: a cancel asked of a running job and not yet applied is forgotten.
ALTER TABLE queuetopia_jobs DROP COLUMN IF EXISTS cancel_request;
DELETE FROM queuetopia_versions WHERE version = 6;
