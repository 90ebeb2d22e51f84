-- Seconds until the worker should look again (NULL: nothing to wait for): when the
-- earliest queue of the scope becomes due, or when another worker's lease on a due
-- queue runs out (a worker that died stops renewing it: its queue is then recovered
-- after lock_ttl, not lock_ttl plus a poll).
SELECT extract(epoch FROM least(
    (SELECT min(q.ready_at) FROM queuetopia_queues q
      WHERE q.scope = %(scope)s AND q.ready_at > now() AND NOT q.paused
        AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[]))),
    (SELECT min(l.locked_until) FROM queuetopia_leases l
       JOIN queuetopia_queues q ON q.scope = l.scope AND q.queue = l.queue
      WHERE l.scope = %(scope)s AND l.owner <> %(owner)s AND l.locked_until > now()
        AND q.ready_at <= now() AND NOT q.paused
        AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[])))
) - now())::float8 AS seconds
