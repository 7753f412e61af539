"""What the Dagster UI shows for a materialization: previews, palettes, sizes and timings."""

from __future__ import annotations

import base64
import statistics
from collections.abc import Sequence

from dagster import MetadataValue

from render_pipeline.store.renders import CompletedRender

MAX_TABLE_ROWS = 50


def palette_svg(colours: Sequence[str], *, swatch: int = 28) -> str:
    """An inline SVG strip of swatches (Dagster markdown shows images, not styled HTML)."""
    rects = "".join(
        f'<rect x="{i * swatch}" y="0" width="{swatch}" height="{swatch}" fill="{c}"/>' for i, c in enumerate(colours)
    )
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{swatch * len(colours)}" height="{swatch}">{rects}</svg>'
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def render_output_metadata(
    completed: Sequence[tuple[CompletedRender, bytes]], *, partitions: Sequence[str]
) -> dict[str, MetadataValue]:
    """Metadata for one render-asset materialization (one or many upload partitions).

    Dagster copies a ranged run's metadata onto every partition in the range, so the inline
    preview image (tens of kB) is only attached to single-upload runs: on a batch it would
    show one upload's render on 64 partitions and bloat the event log by megabytes a run.
    """
    metadata: dict[str, MetadataValue] = {
        "uploads": MetadataValue.int(len(partitions)),
        "renders_completed": MetadataValue.int(len(completed)),
    }
    rendered = {record.render_metadata.get("partition_key") for record, _ in completed}
    not_rendered = [p for p in partitions if p not in rendered]
    if not_rendered:
        # A ranged run materializes every partition in its range; say which ones have nothing.
        lines = [f"- {markdown_cell(p)}" for p in not_rendered[:MAX_TABLE_ROWS]]
        metadata["not_rendered"] = MetadataValue.md(
            "Invalid upload (see `uploads`) or failed render (see `renders.error_message`):\n\n" + "\n".join(lines)
        )
    if not completed:
        return metadata
    first, preview = completed[0]
    if len(partitions) == 1:
        palette = first.render_metadata.get("palette", [])
        metadata["preview"] = MetadataValue.md(
            f"![preview](data:image/jpeg;base64,{base64.b64encode(preview).decode()})\n\n"
            f"`{first.preview_key}` — {first.width}×{first.height}, {first.target.preset_id}\n\n"
            f"![palette]({palette_svg(palette)}) {' '.join(palette)}"
        )
    metadata["output_key"] = MetadataValue.text(first.output_key)
    metadata["output_bytes"] = MetadataValue.int(first.output_bytes)
    stages = first.render_metadata.get("timings_ms", {}).keys()
    metadata["median_stage_ms"] = MetadataValue.json(
        {
            stage: round(statistics.median(r.render_metadata["timings_ms"][stage] for r, _ in completed), 2)
            for stage in stages
        }
    )
    rows = ["| upload | preset | size | bytes | ms | output |", "|---|---|---|---|---|---|"]
    for record, _ in completed[:MAX_TABLE_ROWS]:
        partition = record.render_metadata.get("partition_key", "")
        rows.append(
            f"| {markdown_cell(partition)} | {record.target.preset_id} | {record.width}×{record.height} | "
            f"{record.output_bytes} | {record.render_metadata.get('duration_ms', '')} | `{record.output_key}` |"
        )
    if len(completed) > MAX_TABLE_ROWS:
        rows.append(f"| … {len(completed) - MAX_TABLE_ROWS} more | | | | | |")
    metadata["renders"] = MetadataValue.md("\n".join(rows))
    return metadata


def markdown_cell(text: str) -> str:
    """Untrusted text in a markdown table cell: no pipes, no markup, bounded length."""
    cleaned = text.replace("|", "\\|").replace("`", "'").replace("<", "&lt;")
    return cleaned if len(cleaned) <= 60 else cleaned[:57] + "…"
