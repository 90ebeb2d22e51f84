-- A write after a step retried because its reply was lost, before the worker acts on
-- what the retry found (docs/design.md, "A retry waits for the standby"). The first
-- try may have committed on this server only: a commit waiting for its synchronous
-- standby that was cut short (the server shutting down, commit_timeout) is visible
-- at once, and a failover can still lose it. The retry may write nothing (it finds
-- the attempt recorded and the next job claimed), so nothing made it wait for the
-- standby. This statement's commit waits, and with it everything committed before.
-- It rewrites one lease row of this worker's, unchanged: one row, so it cannot
-- deadlock with a heartbeat locking many in queue order; none when the worker holds
-- none of these queues, and then the retry gave it nothing to run.
UPDATE queuetopia_leases
   SET locked_until = locked_until
 WHERE scope = %(scope)s
   AND queue = (SELECT l.queue FROM queuetopia_leases l
                 WHERE l.scope = %(scope)s AND l.queue = ANY(%(queues)s::text[])
                   AND l.owner = %(owner)s
                 LIMIT 1)
