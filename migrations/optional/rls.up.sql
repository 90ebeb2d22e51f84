-- Opt-in row-level security on scope (docs/security.md): a role sees and writes only
-- the rows of the scopes mapped to it (or to a role it inherits) in
-- queuetopia_scope_roles. Run as the owner of the queuetopia tables, after
-- `queuetopia migrate`; running it again is harmless. Print it with
-- `queuetopia migrate --print-rls`; undo it with queuetopia.migrations.rls_down_sql().
--
-- Once installed, every role other than the owner (and superusers and BYPASSRLS
-- roles) sees no row at all until it is mapped to a scope. A role cannot map itself:
-- it may only read its own rows of queuetopia_scope_roles.

CREATE TABLE IF NOT EXISTS queuetopia_scope_roles (
    role  regrole NOT NULL,
    scope text    NOT NULL CHECK (char_length(scope) BETWEEN 1 AND 255),
    PRIMARY KEY (role, scope)
);
GRANT SELECT ON queuetopia_scope_roles TO PUBLIC;

-- Each role reads only the mappings of the roles whose privileges it has: the policies
-- below ask this table which scopes the current role may use.
ALTER TABLE queuetopia_scope_roles ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS queuetopia_own_scopes ON queuetopia_scope_roles;
CREATE POLICY queuetopia_own_scopes ON queuetopia_scope_roles FOR SELECT
    USING (pg_has_role(current_user, role, 'USAGE'));

-- Every table with a scope column: reads, updates, deletes and inserts are limited to
-- the role's scopes (tests/test_rls.py checks that no such table is left out).
ALTER TABLE queuetopia_queues ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS queuetopia_scope ON queuetopia_queues;
CREATE POLICY queuetopia_scope ON queuetopia_queues
    USING (scope IN (SELECT s.scope FROM queuetopia_scope_roles s))
    WITH CHECK (scope IN (SELECT s.scope FROM queuetopia_scope_roles s));

ALTER TABLE queuetopia_jobs ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS queuetopia_scope ON queuetopia_jobs;
CREATE POLICY queuetopia_scope ON queuetopia_jobs
    USING (scope IN (SELECT s.scope FROM queuetopia_scope_roles s))
    WITH CHECK (scope IN (SELECT s.scope FROM queuetopia_scope_roles s));

ALTER TABLE queuetopia_leases ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS queuetopia_scope ON queuetopia_leases;
CREATE POLICY queuetopia_scope ON queuetopia_leases
    USING (scope IN (SELECT s.scope FROM queuetopia_scope_roles s))
    WITH CHECK (scope IN (SELECT s.scope FROM queuetopia_scope_roles s));

ALTER TABLE queuetopia_limits ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS queuetopia_scope ON queuetopia_limits;
CREATE POLICY queuetopia_scope ON queuetopia_limits
    USING (scope IN (SELECT s.scope FROM queuetopia_scope_roles s))
    WITH CHECK (scope IN (SELECT s.scope FROM queuetopia_scope_roles s));

ALTER TABLE queuetopia_buckets ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS queuetopia_scope ON queuetopia_buckets;
CREATE POLICY queuetopia_scope ON queuetopia_buckets
    USING (scope IN (SELECT s.scope FROM queuetopia_scope_roles s))
    WITH CHECK (scope IN (SELECT s.scope FROM queuetopia_scope_roles s));

ALTER TABLE queuetopia_periodic ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS queuetopia_scope ON queuetopia_periodic;
CREATE POLICY queuetopia_scope ON queuetopia_periodic
    USING (scope IN (SELECT s.scope FROM queuetopia_scope_roles s))
    WITH CHECK (scope IN (SELECT s.scope FROM queuetopia_scope_roles s));
