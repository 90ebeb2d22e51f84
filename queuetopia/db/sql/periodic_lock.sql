-- Lock a periodic's row for the transaction that enqueues its due ticks; a worker that
-- finds it locked leaves the work to the one holding it (exactly once per tick).
SELECT last_tick, now() AS db_now FROM queuetopia_periodic
 WHERE scope = %(scope)s AND name = %(name)s
   FOR UPDATE SKIP LOCKED
