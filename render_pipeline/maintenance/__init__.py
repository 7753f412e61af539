"""Maintenance procedures: retention, orphan reconciliation, the stale-render reaper, Dagster
history.

Each is a plain function over the resources (testable without a run) with its validated
config and a report of counts; `ops` wraps each in a thin op, `jobs` runs each op alone and
`schedules` runs the jobs; `storage_usage` is the slice's one asset.  `definitions` gathers
the slice for `render_pipeline.definitions`.
Every procedure works in bounded batches, commits per batch and can be re-run at any time: a
run killed half way is finished by the next one.
"""
