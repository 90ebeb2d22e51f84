-- Wake every worker of a scope (an empty queue name means "look at everything").
SELECT pg_notify('queuetopia', json_build_array(%(scope)s::text, %(queue)s::text)::text)
