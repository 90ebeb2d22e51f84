-- Delete finished jobs in small batches so no prune holds many locks or a long xmin.
DELETE FROM queuetopia_jobs
 WHERE id IN (SELECT id FROM queuetopia_jobs
               WHERE scope = %(scope)s AND state IN ('done', 'cancelled')
                 AND done_at < now() - make_interval(secs => %(older_than)s)
               LIMIT %(batch)s)
