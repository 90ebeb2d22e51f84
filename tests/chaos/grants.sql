-- Least privileges for queuetopia's roles. Run once as the owner of the queuetopia
-- tables, after `queuetopia migrate` (the schema is installed by an administrator:
-- neither role may run DDL). The roles exist already, e.g.
--   CREATE ROLE qt_worker LOGIN PASSWORD '...';
-- tests/chaos/test_security.py runs workers and producers with exactly these grants.

-- Only the owner creates objects: no tables in the schema, no temporary tables.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
DO $$ BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END $$;

-- Producers enqueue, and read back what they enqueued (get_job, list_jobs).
GRANT SELECT, INSERT, UPDATE ON queuetopia_queues TO qt_producer;
GRANT SELECT, INSERT ON queuetopia_jobs TO qt_producer;

-- Workers lease queues, claim and record jobs, prune finished jobs, enqueue periodic
-- jobs, and check at start that the schema is up to date.
GRANT SELECT, INSERT, UPDATE ON queuetopia_queues TO qt_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON queuetopia_jobs TO qt_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON queuetopia_leases TO qt_worker;
GRANT SELECT, INSERT, UPDATE ON queuetopia_periodic TO qt_worker;
GRANT SELECT ON queuetopia_versions TO qt_worker;
GRANT USAGE ON SEQUENCE queuetopia_fence TO qt_worker;
-- Rate limits (docs/flow-control.md): workers read them, draw from the budgets and
-- prune those full again.
GRANT SELECT ON queuetopia_limits TO qt_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON queuetopia_buckets TO qt_worker;

-- Operators (queuetopia inspect, jobs, job, retry, cancel, pause, resume, prune) read
-- everything, change jobs and queues, and delete finished jobs.
GRANT SELECT, INSERT, UPDATE ON queuetopia_queues TO qt_operator;
GRANT SELECT, UPDATE, DELETE ON queuetopia_jobs TO qt_operator;
GRANT SELECT ON queuetopia_leases TO qt_operator;
-- ... and set, list and remove rate limits (queuetopia limit), whose budgets go with
-- them; a prune deletes the budgets full again, locking them (UPDATE) to skip those a
-- worker is drawing from.
GRANT SELECT, INSERT, UPDATE, DELETE ON queuetopia_limits TO qt_operator;
GRANT SELECT, UPDATE, DELETE ON queuetopia_buckets TO qt_operator;
