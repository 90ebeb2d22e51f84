-- Renew every lease this worker holds in one statement (the heartbeat), and store
-- each queue's floor with it (docs/design.md, "The floor"): a worker that takes a
-- queue over from this one, dead or alive, starts its search there.
-- A queue missing from the result is lost: its lease expired or was taken over.
-- `cancel` names the attempt ([job id, attempted_at]) running under the lease that an
-- operator asked to cancel (docs/flow-control.md): the worker learns it here should
-- the notification be lost.
-- The rows are locked in queue order, so two heartbeats (or a heartbeat and a
-- takeover) never deadlock.
-- Plans stay linear in the leases whatever the statistics (as in job_step.sql): each
-- lease is locked by a probe on its key, in queue order, and the update finds the
-- locked rows by their row ids (a TID scan), with each floor from a jsonb object.
WITH held AS MATERIALIZED (
    SELECT coalesce(array_agg(locked.row_id), '{}') AS held_rows,
           jsonb_object_agg(h.queue, jsonb_build_array(h.floor_at, h.floor_seq))
               AS held_floors
      FROM (SELECT * FROM unnest(%(queues)s::text[], %(lease_ids)s::uuid[],
                                 %(floor_ats)s::timestamptz[], %(floor_seqs)s::bigint[])
                       AS h(queue, lease_id, floor_at, floor_seq)
             ORDER BY h.queue
            OFFSET 0) AS h
     CROSS JOIN LATERAL (
           SELECT l.ctid AS row_id FROM queuetopia_leases l
            WHERE l.scope = %(scope)s AND l.queue = h.queue AND l.lease_id = h.lease_id
              AND l.locked_until > now()
              FOR UPDATE OF l
           OFFSET 0) AS locked
)
UPDATE queuetopia_leases l
   SET locked_until = now() + make_interval(secs => %(ttl)s),
       floor_at = ((SELECT held_floors FROM held) -> l.queue ->> 0)::timestamptz,
       floor_seq = ((SELECT held_floors FROM held) -> l.queue ->> 1)::bigint
 WHERE l.ctid = ANY((SELECT held_rows FROM held)::tid[])
RETURNING l.queue,
          (SELECT jsonb_build_array(j.id, j.attempted_at) FROM queuetopia_jobs j
            WHERE j.scope = l.scope AND j.queue = l.queue AND j.state = 'running'
              AND j.lease_id = l.lease_id AND j.cancel_request IS NOT NULL
            LIMIT 1) AS cancel
