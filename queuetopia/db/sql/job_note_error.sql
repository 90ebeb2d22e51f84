-- Append a note to the error of the attempt just recorded, fenced like JOB_FINISH.
-- The fence of a write made under a lease (CTE `lease`, the same in job_claim_head.sql
-- and job_note_error.sql; job_finish.sql fences each row by its own lease): our lease
-- row, live, locked against a concurrent takeover until the write commits
-- (docs/guarantees.md, rule 10). The write adds `AND EXISTS (SELECT 1 FROM lease)`.
WITH lease AS (
    SELECT 1 FROM queuetopia_leases
     WHERE scope = %(scope)s AND queue = %(queue)s AND lease_id = %(lease_id)s
       AND locked_until > now()
       FOR UPDATE
)
UPDATE queuetopia_jobs
   SET error = coalesce(error, '') || %(note)s, updated_at = now()
 WHERE id = %(id)s AND lease_id = %(lease_id)s AND EXISTS (SELECT 1 FROM lease)
