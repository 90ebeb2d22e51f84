-- --8<-- [start:autovacuum]
-- The autovacuum settings queuetopia's migrations set on its tables.
SELECT relname, reloptions
  FROM pg_class
 WHERE relname LIKE 'queuetopia\_%' AND relkind = 'r'
 ORDER BY relname;
-- --8<-- [end:autovacuum]

-- --8<-- [start:dead-tuples]
-- Dead rows waiting for vacuum, and when autovacuum last ran, per queuetopia table.
SELECT relname, n_live_tup, n_dead_tup, last_autovacuum
  FROM pg_stat_user_tables
 WHERE relname LIKE 'queuetopia\_%'
 ORDER BY n_dead_tup DESC;
-- --8<-- [end:dead-tuples]

-- --8<-- [start:long-transactions]
-- Transactions open for over five minutes: they keep vacuum from removing dead rows,
-- in queuetopia's tables as in every other.
SELECT pid, application_name, state, now() - xact_start AS open_for, left(query, 60) AS query
  FROM pg_stat_activity
 WHERE xact_start < now() - interval '5 minutes'
 ORDER BY xact_start;
-- --8<-- [end:long-transactions]

-- --8<-- [start:connections]
-- Connections per application: workers and the topia's pools say 'queuetopia'.
SELECT application_name, state, count(*)
  FROM pg_stat_activity
 WHERE datname = current_database()
 GROUP BY application_name, state
 ORDER BY count(*) DESC;
-- --8<-- [end:connections]
