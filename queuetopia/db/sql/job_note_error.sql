-- Append a note to the error of the attempt just recorded (a failure hook raised),
-- fenced like the record (docs/guarantees.md, rule 10): only while our lease on the
-- queue is live and the job was last written under it.
UPDATE queuetopia_jobs j
   SET error = coalesce(j.error, '') || %(note)s, updated_at = now()
 WHERE j.id = %(id)s AND j.scope = %(scope)s AND j.lease_id = %(lease_id)s
   AND EXISTS (SELECT 1 FROM queuetopia_leases l
                WHERE l.scope = %(scope)s AND l.queue = %(queue)s
                  AND l.lease_id = %(lease_id)s AND l.locked_until > now())
