"""What the UI shows for one partition: that partition's renders, palette and preview."""

from __future__ import annotations

import uuid

from PIL import Image

from render_pipeline.imaging.encode import make_preview
from render_pipeline.render.metadata import render_partition_metadata, upload_materialization_metadata
from render_pipeline.store.renders import CompletedRender, RenderTarget
from render_pipeline_tests.orchestration_helpers import inline_jpeg


def _completed(preset: str, size: tuple[int, int]) -> CompletedRender:
    render_id = uuid.uuid4()
    return CompletedRender(
        target=RenderTarget(render_id, uuid.uuid4(), "duotone", preset),
        output_key=f"renders/{render_id}/output.png",
        preview_key=f"renders/{render_id}/preview.jpg",
        output_sha256="0" * 64,
        output_bytes=1234,
        width=size[0],
        height=size[1],
        style_version=3,
        algorithm_config={},
        render_metadata={"palette": ["#1e0a5e", "#ff4d8d"], "timings_ms": {"decode": 1.0}, "duration_ms": 4.5},
    )


def test_a_partition_shows_each_of_its_renders_and_a_thumbnail_of_its_own_preview() -> None:
    preview = make_preview(Image.new("RGB", (1320, 2868), (30, 10, 94)))
    renders = [_completed("iphone-6.9", (1320, 2868)), _completed("square-1024", (1024, 1024))]
    metadata = render_partition_metadata([(renders[0], preview), (renders[1], preview)])

    thumbnail = inline_jpeg(metadata["preview"].value)
    assert thumbnail.size == (118, 256)  # the preview's shape, 256 px long side
    assert max(abs(a - b) for a, b in zip(thumbnail.getpixel((50, 100)), (30, 10, 94))) <= 4
    assert renders[0].preview_key in metadata["preview"].value
    assert metadata["palette"].value == "#1e0a5e #ff4d8d"
    for record in renders:
        assert str(record.target.render_id) in metadata["renders"].value
        assert f"{record.width}×{record.height}" in metadata["renders"].value
    assert metadata["output_keys"].value == [r.output_key for r in renders]
    assert metadata["output_bytes"].value == 2468


def test_an_invalid_upload_says_why_and_shows_only_what_is_known() -> None:
    facts = {"status": "invalid", "object_key": "uploads/x/a.jpg", "code": "truncated", "reason": "ends early",
             "format": None, "sha256": "ab" * 32, "width": None, "height": None, "byte_size": 600}
    metadata = upload_materialization_metadata(facts)
    assert metadata["reason"].value == "truncated: ends early"
    assert metadata["bytes"].value == 600 and "dimensions" not in metadata and "format" not in metadata
