"""Maintenance procedures: retention, orphan reconciliation, the stale-render reaper, Dagster
history.

Each is a plain function over the resources (testable without a run) with its validated
config and a report of counts; `render_pipeline.ops.maintenance` wraps each in a thin op.
Every procedure works in bounded batches, commits per batch and can be re-run at any time: a
run killed half way is finished by the next one.
"""
