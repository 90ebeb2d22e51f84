-- The queues an operator selection names (a LIKE pattern), in name order.
SELECT queue, paused FROM queuetopia_queues
 WHERE scope = %(scope)s AND queue LIKE %(pattern)s
 ORDER BY queue
