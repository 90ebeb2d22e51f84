-- A head of `queue` waits for the jobs `ids`, not done when the worker's step looked
-- (docs/flow-control.md): each one still not done is told to wake the queue once it
-- is (`wake`, read by the step that records it done, which notifies the queue). The
-- update reads each row as committed, so a job done since that step is not written,
-- and the worker looks at the queue again at once: no wake is lost in between. The
-- rows are locked in id order (two workers never deadlock on them).
UPDATE queuetopia_jobs d
   SET wake = ARRAY(SELECT DISTINCT x FROM unnest(d.wake || %(queue)s::text) AS x ORDER BY x)
 WHERE d.id = ANY(ARRAY(SELECT l.id FROM queuetopia_jobs l
                         WHERE l.id = ANY(%(ids)s::bigint[]) AND l.scope = %(scope)s
                         ORDER BY l.id FOR NO KEY UPDATE))
   AND d.scope = %(scope)s AND d.state <> 'done'
RETURNING d.id
