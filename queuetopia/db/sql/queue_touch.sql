-- After an operator change, make the queues due now so a worker re-reads their
-- heads. Takes the queue row locks, in name order like JOB_INSERT_MANY: an operator
-- call may wait for an open enqueue, never deadlock with one.
WITH locked AS (
    SELECT queue AS locked_queue FROM queuetopia_queues
     WHERE scope = %(scope)s AND queue = ANY(%(queues)s::text[])
     ORDER BY queue
       FOR NO KEY UPDATE
)
UPDATE queuetopia_queues q SET ready_at = least(ready_at, now())
  FROM locked
 WHERE q.scope = %(scope)s AND q.queue = locked_queue
