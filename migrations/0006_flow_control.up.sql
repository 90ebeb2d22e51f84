-- Flow control (docs/flow-control.md). A cancel asked of a running job is kept on its
-- row until its attempt ends: who asked, when and why ({"by", "at", "reason"}). The
-- step that records the attempt reads it, so the job ends cancelled (unless it is
-- done first) whichever worker records it, and however late the request reached it.
ALTER TABLE queuetopia_jobs ADD COLUMN IF NOT EXISTS cancel_request jsonb;

INSERT INTO queuetopia_versions (version, name) VALUES (6, 'flow_control')
ON CONFLICT (version) DO NOTHING;
