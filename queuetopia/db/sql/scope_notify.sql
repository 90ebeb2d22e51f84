-- Wake the workers of a scope: the payload names the scope and the queues to look
-- at (db/notify.py; an empty queue name means "look at everything").
SELECT pg_notify('queuetopia', %(payload)s::text)
