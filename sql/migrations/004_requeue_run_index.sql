-- The requeue sensor names the run each claimed render is requested in (metadata.requeue_run);
-- that run, and its retries, look its renders up by that name.
CREATE INDEX renders_requeue_run_idx ON renders ((metadata ->> 'requeue_run'), style_id)
    WHERE metadata ? 'requeue_run';
