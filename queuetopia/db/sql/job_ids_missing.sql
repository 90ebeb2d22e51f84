-- The ids among `ids` that name no job of the scope: an enqueue's `after` may only
-- name jobs that exist (docs/flow-control.md), so no cycle can be written.
SELECT i AS id
  FROM unnest(%(ids)s::bigint[]) AS i
 WHERE NOT EXISTS (SELECT 1 FROM queuetopia_jobs j WHERE j.id = i AND j.scope = %(scope)s)
 ORDER BY i
