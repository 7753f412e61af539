"""Maintenance assets: storage usage (the upload and render assets live in `render_pipeline.render`)."""
