-- Renew every lease this worker holds in one statement (the heartbeat).
-- A queue missing from the result is lost: its lease expired or was taken over.
-- The rows are locked in queue order, as JOB_FINISH locks them, so a heartbeat and a
-- batch of outcomes of the same worker never deadlock.
WITH held AS (
    SELECT l.queue AS held_queue
      FROM queuetopia_leases l
      JOIN unnest(%(queues)s::text[], %(lease_ids)s::uuid[]) AS h(queue, lease_id)
        ON l.queue = h.queue AND l.lease_id = h.lease_id
     WHERE l.scope = %(scope)s AND l.queue = ANY(%(queues)s::text[])
       AND l.locked_until > now()
     ORDER BY l.queue
       FOR UPDATE OF l
)
UPDATE queuetopia_leases l
   SET locked_until = now() + make_interval(secs => %(ttl)s)
  FROM held
 WHERE l.scope = %(scope)s AND l.queue = held_queue
RETURNING l.queue
