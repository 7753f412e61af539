"""What the Dagster UI shows for one upload partition: its renders, palette and preview, or
its validation result."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

from dagster import MetadataValue
from PIL import Image

from render_pipeline.store.renders import CompletedRender

THUMBNAIL_LONG_SIDE = 256  # the inline preview: ~10 kB a partition in the event log


def render_partition_metadata(completed: Sequence[tuple[CompletedRender, bytes]]) -> dict[str, MetadataValue]:
    """One partition's renders in one style: a preview of the first, the palette drawn, and
    a row per preset with its id, object key, size and time."""
    first, preview_jpeg = completed[0]
    palette = first.render_metadata.get("palette", [])
    rows = ["| preset | size | bytes | ms | render id | output |", "|---|---|---|---|---|---|"]
    for record, _ in completed:
        rows.append(
            f"| {record.target.preset_id} | {record.width}×{record.height} | {record.output_bytes} | "
            f"{record.render_metadata.get('duration_ms', '')} | `{record.target.render_id}` | `{record.output_key}` |"
        )
    return {
        "preview": MetadataValue.md(
            f"![preview]({thumbnail_data_uri(preview_jpeg)})\n\n"
            f"`{first.preview_key}` — {first.width}×{first.height}, {first.target.preset_id}\n\n"
            f"![palette]({palette_svg(palette)}) {' '.join(palette)}"
        ),
        "renders": MetadataValue.md("\n".join(rows)),
        "palette": MetadataValue.text(" ".join(palette)),
        "output_keys": MetadataValue.json([record.output_key for record, _ in completed]),
        "output_bytes": MetadataValue.int(sum(record.output_bytes for record, _ in completed)),
        "timings_ms": MetadataValue.json(first.render_metadata.get("timings_ms", {})),
    }


def upload_materialization_metadata(facts: Mapping) -> dict[str, MetadataValue]:
    """One upload's validation result, as its `uploads` partition shows it."""
    metadata = {
        "status": MetadataValue.text(facts["status"]),
        "object_key": MetadataValue.text(facts["object_key"]),
    }
    if facts["status"] != "valid":
        metadata["reason"] = MetadataValue.text(f"{facts['code']}: {facts['reason']}")
    for name in ("format", "sha256"):
        if facts[name]:
            metadata[name] = MetadataValue.text(facts[name])
    if facts["width"]:
        metadata["dimensions"] = MetadataValue.text(f"{facts['width']}×{facts['height']}")
    if facts["byte_size"] is not None:
        metadata["bytes"] = MetadataValue.int(facts["byte_size"])
    return metadata


def upload_check_metadata(facts: Mapping) -> dict[str, MetadataValue]:
    metadata = {"object_key": MetadataValue.text(facts["object_key"])}
    if facts["status"] != "valid":
        metadata["error_code"] = MetadataValue.text(facts["code"])
    return metadata


def thumbnail_data_uri(preview_jpeg: bytes) -> str:
    """The preview, shrunk for inline display, as a data URI."""
    with Image.open(io.BytesIO(preview_jpeg)) as image:
        image.draft("RGB", (THUMBNAIL_LONG_SIDE, THUMBNAIL_LONG_SIDE))
        image.thumbnail((THUMBNAIL_LONG_SIDE, THUMBNAIL_LONG_SIDE))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def palette_svg(colours: Sequence[str], *, swatch: int = 28) -> str:
    """An inline SVG strip of swatches (Dagster markdown shows images, not styled HTML)."""
    rects = "".join(
        f'<rect x="{i * swatch}" y="0" width="{swatch}" height="{swatch}" fill="{c}"/>' for i, c in enumerate(colours)
    )
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{swatch * len(colours)}" height="{swatch}">{rects}</svg>'
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
