-- Indexes for the operators' runbook queries and the maintenance jobs.

-- "failed renders in the last N hours", bulk requeue by error pattern and time window
CREATE INDEX renders_failed_by_time_idx ON renders (created_at) WHERE status = 'failed';
-- per-style dashboards and requeue by style
CREATE INDEX renders_style_status_idx ON renders (style_id, status, created_at);
-- stale-render reaper: started longer than N ago
CREATE INDEX renders_started_at_idx ON renders (started_at) WHERE status = 'started';
-- retention cleanup: completed renders older than N days
CREATE INDEX renders_completed_at_idx ON renders (completed_at) WHERE status = 'completed';
-- queue depth and in-progress gauges
CREATE INDEX renders_status_idx ON renders (status);
