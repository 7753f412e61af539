"""Render every style on sample photos into a labelled contact sheet (docs/styles.png).

Usage: PYTHONPATH=. python scripts/contact_sheet.py [--samples DIR] [--out docs/styles.png]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from render_pipeline.imaging import STYLES, render

SAMPLES = ("astronaut.png", "coffee.png", "rocket.jpg")
PRESET = "square-1024"
TILE = 360
GAP = 16
LABEL = 44


def contact_sheet(photos: list[tuple[str, bytes]], *, preset: str = PRESET) -> Image.Image:
    """One row per photo: the original, then every style, each tile labelled."""
    columns = ["original", *STYLES]
    width = len(columns) * (TILE + GAP) + GAP
    height = len(photos) * (TILE + LABEL + GAP) + GAP
    sheet = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=22)
    for row, (name, data) in enumerate(photos):
        top = GAP + row * (TILE + LABEL + GAP)
        for col, style in enumerate(columns):
            if style == "original":
                tile, caption = Image.open(io.BytesIO(data)).convert("RGB"), name
            else:
                result = render(data, style, preset)
                tile = Image.open(io.BytesIO(result.output_png)).convert("RGB")
                caption = f"{style} v{result.metadata['style_version']}"
            tile.thumbnail((TILE, TILE), Image.Resampling.LANCZOS)
            left = GAP + col * (TILE + GAP)
            sheet.paste(tile, (left + (TILE - tile.width) // 2, top + (TILE - tile.height) // 2))
            draw.text((left + TILE // 2, top + TILE + LABEL // 2), caption, fill=(240, 240, 240), font=font, anchor="mm")
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "samples")
    parser.add_argument("--out", type=Path, default=Path("docs/styles.png"))
    args = parser.parse_args()
    photos = [(name, (args.samples / name).read_bytes()) for name in SAMPLES]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(photos).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
