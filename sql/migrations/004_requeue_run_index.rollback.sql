DROP INDEX renders_requeue_run_idx;
