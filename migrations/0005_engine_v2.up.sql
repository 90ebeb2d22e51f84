-- Engine v2 (docs/design.md): a data path on which no statement per job rewrites a row
-- shared by every job of its queue, and no claim walks the dead entries of done jobs,
-- so a snapshot held open elsewhere (a report, pg_dump, a forgotten session) does not
-- slow a busy queue down job by job.
--
-- Commit order without the queue row. A producer takes a transaction-scoped advisory
-- lock per queue (class 1364479824, key queuetopia_lock_key(scope, queue)) instead of
-- updating the queue row's last_seq: it serialises the producers of one queue until
-- they commit and writes no row version. A job's seq is then drawn from the sequence
-- queuetopia_seq after the lock: the seqs of one queue follow commit order. last_seq
-- is no longer written. Any role may draw from the sequence (a producer needs no
-- grant it did not need before; a number drawn for nothing is only a gap).
--
-- The line's floor. A worker searches a queue's next head from the position of a job
-- it knows is behind every job still in line (floor_at, floor_seq), not from the
-- start of the queue, whose index entries under a held snapshot are all dead. Jobs
-- that join a line before that position (an operator's retry, a job scheduled in the
-- past) count a rewind on the queue row: rewinds, and the earliest position rewound
-- to (rewind_at, rewind_seq). A holder that has applied the rewinds up to a count
-- records it in its lease (rewinds_seen).
--
-- Leases outlive their holders: a release keeps the row (released, locked_until now)
-- with the floor, for the next holder. takeover tells the holder that took a lease
-- whether its previous holder vanished without releasing (then a job of the queue may
-- still be marked running, a lost worker's).
--
CREATE SEQUENCE queuetopia_seq;
SELECT setval('queuetopia_seq', greatest((SELECT max(seq) FROM queuetopia_jobs), 1));
GRANT USAGE ON SEQUENCE queuetopia_seq TO PUBLIC;

-- The index of running jobs is no longer unique: a unique index checks every entry of
-- the same key on each insert, and under a held snapshot a queue's key collects one
-- dead entry per job it ever ran (measured: docs/performance.md). At most one running
-- job per queue rests on the lease and its fence (docs/guarantees.md, rule 2).

ALTER TABLE queuetopia_leases
    ADD COLUMN floor_at     timestamptz,
    ADD COLUMN floor_seq    bigint,
    ADD COLUMN rewinds_seen bigint  NOT NULL DEFAULT 0,
    ADD COLUMN released     boolean NOT NULL DEFAULT false,
    ADD COLUMN takeover     boolean NOT NULL DEFAULT false;

ALTER TABLE queuetopia_queues
    ADD COLUMN rewinds    bigint NOT NULL DEFAULT 0,
    ADD COLUMN rewind_at  timestamptz,
    ADD COLUMN rewind_seq bigint;

DROP INDEX IF EXISTS queuetopia_jobs_one_running;
CREATE INDEX queuetopia_jobs_running ON queuetopia_jobs (scope, queue)
    WHERE state = 'running';

-- The key of a queue's advisory lock (with the class 1364479824, "QTOP"): scope and
-- queue names hold no control character, so the separator cannot be forged. A hash
-- collision only makes two queues' producers wait for each other; it never reorders.
CREATE FUNCTION queuetopia_lock_key(p_scope text, p_queue text)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtext(p_scope || E'\x1f' || p_queue)
$$;

-- Correct a queue's ready_at hint from its head, found from the floor (p_at, p_seq),
-- or from the queue's rewind when it holds rewinds past p_seen. Skipped (false) while
-- a producer of the queue has not committed: its job would not be seen, and the hint
-- must never be late. The lock is taken before the head is read, and each statement
-- of a plpgsql function reads with a snapshot of its own, so every job committed
-- before the lock was granted is seen. Writes only when the hint changes.
CREATE FUNCTION queuetopia_queue_settle(p_scope text, p_queue text, p_at timestamptz,
                                        p_seq bigint, p_seen bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_at    timestamptz := coalesce(p_at, '-infinity');
    v_seq   bigint      := coalesce(p_seq, 0);
    v_ready timestamptz;
BEGIN
    IF NOT pg_try_advisory_xact_lock(1364479824, queuetopia_lock_key(p_scope, p_queue)) THEN
        RETURN false;
    END IF;
    SELECT CASE WHEN q.rewind_at IS NULL OR q.rewinds <= p_seen THEN v_at
                WHEN (q.rewind_at, q.rewind_seq) < (v_at, v_seq) THEN q.rewind_at
                ELSE v_at END,
           CASE WHEN q.rewind_at IS NULL OR q.rewinds <= p_seen THEN v_seq
                WHEN (q.rewind_at, q.rewind_seq) < (v_at, v_seq) THEN q.rewind_seq
                ELSE v_seq END
      INTO v_at, v_seq
      FROM queuetopia_queues q
     WHERE q.scope = p_scope AND q.queue = p_queue;
    SELECT CASE WHEN j.state = 'failed' THEN NULL
                WHEN j.state = 'running' THEN now()
                ELSE greatest(j.scheduled_at, coalesce(j.next_attempt_at, j.scheduled_at)) END
      INTO v_ready
      FROM queuetopia_jobs j
     WHERE j.scope = p_scope AND j.queue = p_queue AND j.in_line
       AND (j.scheduled_at, j.seq) >= (v_at, v_seq)
     ORDER BY j.scheduled_at, j.seq
     LIMIT 1;
    UPDATE queuetopia_queues SET ready_at = v_ready
     WHERE scope = p_scope AND queue = p_queue AND ready_at IS DISTINCT FROM v_ready;
    RETURN true;
END
$$;

-- A rolling upgrade (docs/migrations.md): workers of the first engine may still run
-- after this migration. They take a lease by rewriting its row and know nothing of
-- `released`, so a row that a v2 worker released, taken that way, would still say
-- released; if that worker then died, the next holder would not look for the job it
-- left running (takeover). A take that leaves `released` set is the first engine's:
-- its lease is not released. (A v2 take always clears `released` itself; a v2 release
-- keeps the lease_id.)
CREATE FUNCTION queuetopia_lease_taken_v1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.released := false;
    RETURN NEW;
END
$$;
CREATE TRIGGER queuetopia_lease_taken_v1 BEFORE UPDATE ON queuetopia_leases
    FOR EACH ROW
    WHEN (OLD.released AND NEW.released AND NEW.lease_id IS DISTINCT FROM OLD.lease_id)
    EXECUTE FUNCTION queuetopia_lease_taken_v1();

INSERT INTO queuetopia_versions (version, name) VALUES (5, 'engine_v2')
ON CONFLICT (version) DO NOTHING;
