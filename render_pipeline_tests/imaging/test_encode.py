"""PNG writer: palette PNGs that any decoder reads back exactly, at the smallest bit depth."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from render_pipeline.imaging.encode import encode_png, palette_png


def _chunks(data: bytes) -> list[bytes]:
    kinds, offset = [], 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kinds.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return kinds


@pytest.mark.parametrize("colours", [1, 2, 3, 4, 5, 16, 17, 256])
@pytest.mark.parametrize("width", [1, 3, 7, 8, 9, 33])
def test_palette_png_round_trips_exactly(colours: int, width: int) -> None:
    rng = np.random.default_rng(colours * 100 + width)
    indices = rng.integers(0, colours, (5, width)).astype(np.uint8)
    palette = [int(v) for v in rng.integers(0, 256, colours * 3)]
    back = Image.open(io.BytesIO(palette_png(indices, palette)))
    back.load()
    assert back.mode == "P" and back.size == (width, 5)
    assert np.array_equal(np.asarray(back), indices)
    assert back.getpalette()[: colours * 3] == palette
    depth = next(bits for bits in (1, 2, 4, 8) if colours <= 1 << bits)
    assert Image.open(io.BytesIO(palette_png(indices, palette))).info.get("bits", depth) == depth


def test_encode_png_writes_only_the_srgb_tag_before_the_palette() -> None:
    image = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) % 6, "L")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0, 255, 255, 255], "RGB")
    assert _chunks(encode_png(image)) == [b"IHDR", b"sRGB", b"PLTE", b"IDAT", b"IEND"]


def test_palette_png_refuses_indices_outside_the_palette() -> None:
    with pytest.raises(ValueError, match="palette has 2 colours"):
        palette_png(np.array([[0, 2]], np.uint8), [0, 0, 0, 255, 255, 255])
