-- Job metadata that is not params: the trace context of the enqueue, for now.
ALTER TABLE queuetopia_jobs ADD COLUMN meta jsonb NOT NULL DEFAULT '{}';

INSERT INTO queuetopia_versions (version, name) VALUES (3, 'job_meta')
ON CONFLICT (version) DO NOTHING;
