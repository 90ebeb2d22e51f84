-- Give a queue back: drop the lease and correct the queue's ready_at hint
-- (queuetopia_queue_refresh skips that if a producer holds the queue row).
-- The commit does not wait for its WAL flush (synchronous_commit off for this
-- transaction only): a release lost in a database crash leaves the lease to run out
-- after lock_ttl, as a dead worker's does, and nothing else depends on it. The next
-- synchronous commit flushes it anyway.
WITH gone AS (
    DELETE FROM queuetopia_leases
     WHERE scope = %(scope)s AND queue = %(queue)s AND lease_id = %(lease_id)s
    RETURNING 1
)
SELECT queuetopia_queue_refresh(%(scope)s, %(queue)s) AS refreshed,
       (SELECT count(*) FROM gone) AS released,
       set_config('synchronous_commit', 'off', true) AS commit_mode
