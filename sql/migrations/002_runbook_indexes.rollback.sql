DROP INDEX renders_status_idx;
DROP INDEX renders_completed_at_idx;
DROP INDEX renders_started_at_idx;
DROP INDEX renders_style_status_idx;
DROP INDEX renders_failed_by_time_idx;
