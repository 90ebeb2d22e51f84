-- Due queues that a worker may take: due by their ready_at hint (the ready_at index,
-- never a scan of pending jobs), not paused, and not held by a live lease (whoever
-- holds a queue serves it), the longest waiting first. The worker takes them with
-- JOB_STEP; a hint that was early only costs it a look. `skip` lists queues this
-- worker found not ready but could not correct, so it does not spin on them.
-- No locks. The lease of each queue is looked up by its key (OFFSET 0 keeps the
-- lookup a probe per queue): as an anti join, a planner without statistics (a fresh
-- table) may compare every due queue with every lease, a second at 10,000 queues.
SELECT q.queue, q.ready_at
  FROM queuetopia_queues q
 WHERE q.scope = %(scope)s
   AND q.ready_at <= now()
   AND NOT q.paused
   AND (%(queues)s::text[] IS NULL OR q.queue = ANY(%(queues)s::text[]))
   AND q.queue <> ALL(%(skip)s::text[])
   AND NOT EXISTS (
       SELECT 1 FROM queuetopia_leases l
        WHERE l.scope = q.scope AND l.queue = q.queue AND l.locked_until > now()
       OFFSET 0)
 ORDER BY q.ready_at
 LIMIT %(limit)s
