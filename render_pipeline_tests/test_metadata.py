"""Materialization metadata: what the UI shows per partition, and what it must not repeat."""

from __future__ import annotations

import uuid

from render_pipeline.metadata import render_output_metadata
from render_pipeline.store.renders import CompletedRender, RenderTarget


def _completed(partition: str) -> CompletedRender:
    render_id = uuid.uuid4()
    return CompletedRender(
        target=RenderTarget(render_id, uuid.uuid4(), "pop-poster", "square-1024"),
        output_key=f"renders/{render_id}/output.png",
        preview_key=f"renders/{render_id}/preview.jpg",
        output_sha256="0" * 64,
        output_bytes=1234,
        width=1024,
        height=1024,
        style_version=2,
        algorithm_config={},
        render_metadata={"partition_key": partition, "palette": ["#000000", "#ffffff"],
                         "timings_ms": {"decode": 1.0}, "duration_ms": 1.0},
    )


def test_a_single_upload_shows_its_preview_inline() -> None:
    metadata = render_output_metadata([(_completed("a.jpg"), b"\xff\xd8jpeg")], partitions=["a.jpg"])
    assert metadata["preview"].value.startswith("![preview](data:image/jpeg;base64,")


def test_a_batch_lists_its_renders_without_repeating_one_preview_on_every_partition() -> None:
    partitions = [f"{i}.jpg" for i in range(3)]
    metadata = render_output_metadata([(_completed(p), b"\xff\xd8jpeg") for p in partitions], partitions=partitions)
    assert "preview" not in metadata
    assert all(p in metadata["renders"].value for p in partitions)
    assert metadata["renders_completed"].value == 3
