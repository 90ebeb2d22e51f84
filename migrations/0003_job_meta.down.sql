ALTER TABLE queuetopia_jobs DROP COLUMN IF EXISTS meta;
DELETE FROM queuetopia_versions WHERE version = 3;
