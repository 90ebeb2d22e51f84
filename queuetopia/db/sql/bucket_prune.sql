-- Delete the rate limits' budgets that are full again (docs/flow-control.md): a
-- bucket is made full when first drawn from, so a full one and none are the same
-- budget. A bucket a step holds is skipped, never waited for: that step is drawing
-- from it (and queuetopia_rate_take makes again one deleted under its feet).
DELETE FROM queuetopia_buckets
 WHERE ctid = ANY(ARRAY(
       SELECT b.ctid FROM queuetopia_buckets b
         JOIN queuetopia_limits l ON l.scope = b.scope AND l.name = b.name
        WHERE b.scope = %(scope)s
          AND b.tokens + l.count / l.period
                         * greatest(extract(epoch FROM now() - b.refilled_at), 0) >= l.burst
        LIMIT %(batch)s
          FOR UPDATE OF b SKIP LOCKED))
