-- Renew every lease this worker holds in one statement (the heartbeat), and store
-- each queue's floor with it (docs/design.md, "The floor"): a worker that takes a
-- queue over from this one, dead or alive, starts its search there.
-- A queue missing from the result is lost: its lease expired or was taken over.
-- The rows are locked in queue order, so two heartbeats (or a heartbeat and a
-- takeover) never deadlock.
WITH held AS (
    SELECT l.queue AS held_queue, h.floor_at AS held_floor_at, h.floor_seq AS held_floor_seq
      FROM queuetopia_leases l
      JOIN unnest(%(queues)s::text[], %(lease_ids)s::uuid[], %(floor_ats)s::timestamptz[],
                  %(floor_seqs)s::bigint[]) AS h(queue, lease_id, floor_at, floor_seq)
        ON l.queue = h.queue AND l.lease_id = h.lease_id
     WHERE l.scope = %(scope)s AND l.queue = ANY(%(queues)s::text[])
       AND l.locked_until > now()
     ORDER BY l.queue
       FOR UPDATE OF l
)
UPDATE queuetopia_leases l
   SET locked_until = now() + make_interval(secs => %(ttl)s),
       floor_at = held_floor_at, floor_seq = held_floor_seq
  FROM held
 WHERE l.scope = %(scope)s AND l.queue = held_queue
RETURNING l.queue
