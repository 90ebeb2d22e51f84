-- Removes the opt-in row-level security of rls.up.sql (nothing else); harmless where
-- it was never installed. Dropping the mapping table drops the policies that read it.
ALTER TABLE IF EXISTS queuetopia_queues DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS queuetopia_jobs DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS queuetopia_leases DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS queuetopia_periodic DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS queuetopia_limits DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS queuetopia_buckets DISABLE ROW LEVEL SECURITY;
DROP TABLE IF EXISTS queuetopia_scope_roles CASCADE;
