-- A read for the dashboard (docs/dashboard.md).
-- The live leases of the scope: which node holds which queue until when. A lease whose
-- time ran out is left out, as it no longer holds its queue. No locks.
SELECT queue, owner, token, acquired_at, locked_until, now() AS db_now
  FROM queuetopia_leases
 WHERE scope = %(scope)s AND locked_until > now()
 ORDER BY owner, queue
