-- Undo 0006: rate limits and their budgets go; a cancel asked of a running job and
-- not yet applied is forgotten.
DROP FUNCTION IF EXISTS queuetopia_rate_take(text, bigint[], text[]);
DROP FUNCTION IF EXISTS queuetopia_waits(text, bigint[]);
DROP TABLE IF EXISTS queuetopia_buckets;
DROP TABLE IF EXISTS queuetopia_limits;
ALTER TABLE queuetopia_jobs DROP COLUMN IF EXISTS cancel_request;
ALTER TABLE queuetopia_jobs DROP COLUMN IF EXISTS depends_on;
ALTER TABLE queuetopia_jobs DROP COLUMN IF EXISTS wake;
DELETE FROM queuetopia_versions WHERE version = 6;
