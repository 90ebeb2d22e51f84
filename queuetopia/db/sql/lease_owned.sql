-- The live leases a worker owns. After an acquisition whose reply was lost, the
-- worker adopts those it does not know: their heads may have been claimed already.
SELECT queue, lease_id, token FROM queuetopia_leases
 WHERE scope = %(scope)s AND owner = %(owner)s AND locked_until > now()
