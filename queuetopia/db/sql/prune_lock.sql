-- Only one worker of a scope prunes at a time; the lock ends with the transaction.
SELECT pg_try_advisory_xact_lock(%(key)s, hashtext(%(scope)s)) AS locked
