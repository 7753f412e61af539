DROP INDEX renders_live_run_idx;
DROP INDEX renders_completed_keyset_idx;
CREATE INDEX renders_completed_at_idx ON renders (completed_at) WHERE status = 'completed';
DROP INDEX renders_failed_by_update_idx;
CREATE INDEX renders_failed_by_time_idx ON renders (created_at) WHERE status = 'failed';
DROP INDEX renders_failed_live_idx;
