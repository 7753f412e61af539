-- Indexes for the runbook and maintenance queries at a million uploads (12 million renders),
-- chosen with benchmarks/scale_bench.py: each query below reads only the rows it returns.

-- requeue, failures and retention's failed-archive flagging: live (not archived) failures by
-- the time they failed, in the requeue command's order, carrying what requeue and failures
-- print, so they are answered from the index alone (PostgreSQL cannot estimate the archived
-- flag and would otherwise read every failure through the heap to filter on error_message)
CREATE INDEX renders_failed_live_idx ON renders (updated_at, id)
    INCLUDE (style_id, size_preset_id, attempt, error_message)
    WHERE status = 'failed' AND NOT metadata ? 'archived';
-- requeue --include-archived, failures --include-archived: every failure by the time it failed
-- (replaces the index on created_at, by which no query filters or orders failures)
DROP INDEX renders_failed_by_time_idx;
CREATE INDEX renders_failed_by_update_idx ON renders (updated_at, id)
    INCLUDE (style_id, size_preset_id, attempt, error_message)
    WHERE status = 'failed';
-- retention cleanup: expired completed renders in (completed_at, id) keyset order
DROP INDEX renders_completed_at_idx;
CREATE INDEX renders_completed_keyset_idx ON renders (completed_at, id) WHERE status = 'completed';
-- Dagster history retention: the runs that live renders still point to (its exact condition)
CREATE INDEX renders_live_run_idx ON renders (dagster_run_id)
    WHERE status <> 'archived' AND NOT (status = 'failed' AND metadata ? 'archived');
