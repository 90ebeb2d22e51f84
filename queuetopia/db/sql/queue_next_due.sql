-- Seconds until the worker should look again (NULL: nothing to wait for): when the
-- earliest queue of the scope becomes due, or when another worker's lease on a due
-- queue runs out (a worker that died stops renewing it: its queue is then recovered
-- after lock_ttl, not lock_ttl plus a poll).
-- Each live lease's queue is looked up by its key alone (a scalar subquery: its
-- primary key is the only index that fits): as a join, or with ready_at in the
-- lookup, a plan made on an empty install may compare every lease with every due
-- queue (seconds at 10,000 queues). The cost is linear in the scope's leases; the
-- worker asks only when a poll found less than it asked for.
SELECT extract(epoch FROM least(
    (SELECT min(q.ready_at) FROM queuetopia_queues q
      WHERE q.scope = %(scope)s AND q.ready_at > now() AND NOT q.paused
        AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[]))),
    (SELECT min(l.locked_until) FROM queuetopia_leases l
      WHERE l.scope = %(scope)s AND l.owner <> %(owner)s AND l.locked_until > now()
        AND (%(queues)s::text[] IS NULL OR l.queue = ANY(%(queues)s::text[]))
        AND (SELECT q.ready_at <= now() AND NOT q.paused FROM queuetopia_queues q
              WHERE q.scope = l.scope AND q.queue = l.queue))
) - now())::float8 AS seconds
