"""Thin Dagster ops around the maintenance procedures (render ops live in `render_pipeline.render`)."""
