-- What one role needs to work its scopes under row-level security: the grants of a
-- worker, a producer and an operator together, and the role's scopes. Filled in by
-- queuetopia.migrations.rls_sql(role, scopes) with the role (as an identifier, and as
-- a value) and the list of its scope names, each quoted by psycopg.
GRANT SELECT, INSERT, UPDATE ON queuetopia_queues TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON queuetopia_jobs TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON queuetopia_leases TO {role};
GRANT SELECT, INSERT, UPDATE ON queuetopia_periodic TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON queuetopia_limits TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON queuetopia_buckets TO {role};
GRANT SELECT ON queuetopia_versions TO {role};
GRANT USAGE ON SEQUENCE queuetopia_fence TO {role};
INSERT INTO queuetopia_scope_roles (role, scope)
SELECT {role_name}::regrole, scope FROM unnest({scopes}::text[]) AS scope
ON CONFLICT DO NOTHING;
