-- Is any queue of the scope due and free? Tells a draining worker to yield its slot.
SELECT EXISTS (
    SELECT 1 FROM queuetopia_queues q
     WHERE q.scope = %(scope)s AND q.ready_at <= now() AND NOT q.paused
       AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[]))
       AND q.queue <> ALL(%(skip)s::text[])
       AND NOT EXISTS (
           SELECT 1 FROM queuetopia_leases l
            WHERE l.scope = q.scope AND l.queue = q.queue AND l.locked_until > now()))
