-- Give queues back, a batch of them: each lease row stays, released, with the floor
-- of its queue's line for the next holder (docs/design.md, "The floor"), and each
-- queue's ready_at hint is corrected from its head (queuetopia_queue_settle, which
-- skips a queue whose producer has not committed yet: the hint stays early).
-- The commit does not wait for its WAL flush (synchronous_commit off for this
-- transaction only): a release lost in a database crash leaves the lease to run out
-- after lock_ttl, as a dead worker's does, and nothing else depends on it. The next
-- synchronous commit flushes it anyway.
-- One row per lease released, with whether its queue's hint was settled.
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(batch)s::jsonb) AS batch(
           in_queue text, in_lease uuid, in_floor_at timestamptz, in_floor_seq bigint,
           in_seen bigint)
), gone AS (
    UPDATE queuetopia_leases l
       SET locked_until = now(), released = true, floor_at = in_floor_at,
           floor_seq = in_floor_seq
      FROM input
     WHERE l.scope = %(scope)s AND l.queue = in_queue AND l.lease_id = in_lease
    RETURNING l.queue AS gone_queue, in_floor_at, in_floor_seq, in_seen
)
SELECT gone_queue AS queue,
       queuetopia_queue_settle(%(scope)s, gone_queue, in_floor_at, in_floor_seq, in_seen)
           AS settled,
       set_config('synchronous_commit', 'off', true) AS commit_mode
  FROM gone
 ORDER BY gone_queue
