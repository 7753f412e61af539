"""Generated test inputs: every format the engine accepts and every kind of bad file."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from PIL import Image, ImageCms

from render_pipeline.imaging.synthetic import photo_like


def photo(width: int = 320, height: int = 240, *, seed: int = 0) -> Image.Image:
    return Image.fromarray(photo_like(width, height, seed=seed))


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg(width: int = 320, height: int = 240, *, seed: int = 0, quality: int = 90, **options) -> bytes:
    return encoded(photo(width, height, seed=seed), "JPEG", quality=quality, **options)


def png(width: int = 320, height: int = 240, *, seed: int = 0) -> bytes:
    return encoded(photo(width, height, seed=seed), "PNG")


def cv2_encoded(pixels: np.ndarray, ext: str) -> bytes:
    """Encode RGB(A) pixels with OpenCV (it writes 16-bit PNG/TIFF, which Pillow cannot)."""
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if pixels.ndim == 3 else pixels
    ok, buffer = cv2.imencode(ext, bgr)
    assert ok
    return buffer.tobytes()


def frames(colours: list[tuple[int, int, int]], size: tuple[int, int] = (64, 48)) -> list[Image.Image]:
    return [Image.new("RGB", size, colour) for colour in colours]


def animated(fmt: str, colours: list[tuple[int, int, int]], **options) -> bytes:
    first, *rest = frames(colours)
    return encoded(first, fmt, save_all=True, append_images=rest, duration=100, loop=0, **options)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A valid-looking PNG declaring ``width`` x ``height`` RGB with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def gif_bomb(width: int = 65535, height: int = 65535) -> bytes:
    """A GIF whose screen and single frame declare ``width`` x ``height`` with almost no data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def swapped_primaries_profile() -> bytes:
    """An RGB ICC profile whose red and blue primaries are swapped (and not named sRGB).

    Built from LittleCMS's sRGB profile by swapping the rXYZ/bXYZ tag entries, so pure
    red pixel data means blue: proof that the decoder really applies embedded profiles.
    """
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack_from(">I", data, 128)[0]
    entries = {bytes(data[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    data[red + 4 : red + 12], data[blue + 4 : blue + 12] = data[blue + 4 : blue + 12], data[red + 4 : red + 12]
    return bytes(data).replace("sRGB".encode("utf-16-be"), "Swap".encode("utf-16-be")).replace(b"sRGB", b"Swap")


def with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(image, "JPEG", quality=95, exif=exif.tobytes())
