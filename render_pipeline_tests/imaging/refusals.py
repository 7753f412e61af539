"""A corpus of refused files: several different files for each cause of refusal.

Each cause maps to its expected ``code`` and a few files that differ in content, size, seed or
where they are damaged, so a reason that copies anything particular to the file (a byte count,
an offset, a dimension, a memory address) shows up as more than one message for the cause.
"""

from __future__ import annotations

import random
import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from render_pipeline_tests.imaging.inputs import encoded, gif_bomb, jpeg, photo, png, png_chunk, png_header_only


# What must never be in a stored reason: memory addresses, object reprs, absolute paths, URLs.
NOISE = re.compile(r"0x[0-9a-fA-F]|object at|<[^<>]*>|(?:^|[\s'\"(=])(?:/|[A-Za-z]:\\)\S|://")

NAMED = {  # the reasons the format-naming promise fixes
    "fits": "unsupported format: FITS",
    "netpbm": "unsupported format: PBM/PGM/PPM/PAM (Netpbm)",
    "pdf": "unsupported format: PDF",
    "svg": "unsupported format: SVG",
    "heic": "unsupported format: HEIC/HEIF",
    "avif": "unsupported format: AVIF",
    "psd": "unsupported format: PSD (Photoshop)",
    "ico": "unsupported format: ICO (Windows icon)",
    "tga": "unsupported format: TGA",
    "jpeg-2000": "unsupported format: JPEG 2000",
    "text": "the file is text, not an image",
    "html": "the file is an HTML page, not an image",
}


@dataclass(frozen=True)
class Cause:
    code: str
    files: tuple[bytes, ...] = ()
    bytes_over_limit: tuple[int, ...] = ()  # files this much larger than the byte limit, zero-filled


def _fits(bitpix: int, width: int, height: int) -> bytes:
    cards = [f"SIMPLE  = {'T':>20}", f"BITPIX  = {bitpix:>20}", f"NAXIS   = {2:>20}",
             f"NAXIS1  = {width:>20}", f"NAXIS2  = {height:>20}", "END"]
    header = "".join(card.ljust(80) for card in cards).encode().ljust(2880, b" ")
    data = bytes(width * height * abs(bitpix) // 8)
    return header + data.ljust(-(-len(data) // 2880) * 2880, b"\x00")


def _netpbm() -> tuple[bytes, ...]:
    image = photo(24, 16, seed=5)
    return (
        encoded(image.convert("1"), "PPM"),  # P4
        encoded(image.convert("L"), "PPM"),  # P5
        encoded(image, "PPM"),  # P6
        b"P1\n# a checkerboard\n4 2\n0 1 0 1\n1 0 1 0\n",
        b"P2\n3 2\n255\n0 128 255\n255 128 0\n",
        b"P3\n2 1\n255\n255 0 0  0 0 255\n",
        b"P7\nWIDTH 2\nHEIGHT 1\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" + bytes(6),
    )


def _iso_media(major: bytes, *compatible: bytes) -> bytes:
    brands = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    ftyp = struct.pack(">I", 8 + len(brands)) + b"ftyp" + brands
    return ftyp + struct.pack(">I", 16) + b"meta" + bytes(8)


def _png_with_header(bit_depth: int, colour_type: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", 32, 32, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 200)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def _overwritten(data: bytes, offset: int, length: int, seed: int) -> bytes:
    damaged = bytearray(data)
    damaged[offset : offset + length] = random.Random(seed).randbytes(length)
    return bytes(damaged)


def _flipped(data: bytes, offset: int) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= 0xFF
    return bytes(damaged)


def causes() -> dict[str, Cause]:
    """Cause name -> expected code and its files."""
    return {
        "empty": Cause("empty", (b"", b"")),
        "too-large": Cause("too_large", bytes_over_limit=(1, 3 * 2**20 + 7)),
        "too-many-pixels": Cause("too_many_pixels", (
            png_header_only(12_000, 10_000), png_header_only(20_000, 6_000),
            png_header_only(100_000, 100_000), gif_bomb(), gif_bomb(40_000, 30_000),
        )),
        "random-bytes": Cause("unsupported_format", tuple(
            random.Random(seed).randbytes(size) for seed, size in ((11, 700), (12, 4096), (13, 25_000))
        )),
        "text": Cause("unsupported_format", (
            b"hello, this is not a photo\n" * 10, "Grüße aus Köln — café\n".encode() * 5,
            b"id,name\n1,alpha\n2,beta\n", b'{"image": null, "note": "not an image"}\n',
            b'<?xml version="1.0"?>\n<catalog><item id="1"/></catalog>\n',
        )),
        "html": Cause("unsupported_format", (
            b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
            b"  <html><head><title>Sign in</title></head><body></body></html>",
            b"<!doctype HTML>\n<html lang='en'><p>Access denied</p></html>",
        )),
        **_format_causes(),
        **_damage_causes(),
    }


def _format_causes() -> dict[str, Cause]:
    """Images and documents in formats the engine does not open."""
    small = photo(64, 48, seed=4)
    return {
        "fits": Cause("unsupported_format", (_fits(8, 16, 16), _fits(16, 100, 40), _fits(-32, 7, 9))),
        "netpbm": Cause("unsupported_format", _netpbm()),
        "pdf": Cause("unsupported_format", (b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF\n", b"%PDF-2.0\n" + bytes(300))),
        "svg": Cause("unsupported_format", (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
            b'<svg width="10" height="10"><rect width="10" height="10"/></svg>',
            b'<?xml version="1.0"?>\n<!-- exported -->\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
            b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n<svg version="1.1"></svg>',
        )),
        "heic": Cause("unsupported_format", (
            _iso_media(b"heic", b"mif1", b"heic"), _iso_media(b"mif1", b"heic"),
        )),
        "avif": Cause("unsupported_format", (
            _iso_media(b"avif", b"mif1", b"miaf"), _iso_media(b"mif1", b"avif"),
        )),
        "psd": Cause("unsupported_format", (
            b"8BPS\x00\x01" + bytes(6) + struct.pack(">HIIHH", 3, 64, 64, 8, 3) + bytes(100),
            b"8BPS\x00\x02" + bytes(6) + struct.pack(">HIIHH", 4, 10, 20, 16, 4) + bytes(40),
        )),
        "ico": Cause("unsupported_format", (
            encoded(small, "ICO", sizes=[(16, 16)]), encoded(small, "ICO", sizes=[(32, 32), (48, 48)]),
        )),
        "tga": Cause("unsupported_format", (
            encoded(small, "TGA"), encoded(small, "TGA", compression="tga_rle"),
        )),
        "jpeg-2000": Cause("unsupported_format", (
            encoded(small, "JPEG2000"), encoded(small, "JPEG2000", no_jp2=True),
        )),
    }


def _damage_causes() -> dict[str, Cause]:
    """Accepted formats, cut short or overwritten at different places."""
    big_png, photo_jpeg, small = png(seed=2), jpeg(seed=3), photo(64, 48, seed=4)
    gif, tiff, webp = encoded(small, "GIF"), encoded(small, "TIFF"), encoded(small, "WEBP")
    return {
        "jpeg-header-ends-early": Cause("truncated", tuple(photo_jpeg[:n] for n in (100, 200, 400))),
        "jpeg-data-ends-early": Cause("truncated", (
            photo_jpeg[:1000], photo_jpeg[:4000], photo_jpeg[:9000], jpeg(progressive=True)[:5000],
        )),
        "jpeg-data-damaged": Cause("corrupt", tuple(
            _overwritten(photo_jpeg, offset, 200, offset) for offset in (700, 3000, 8000)
        )),
        "png-header-unreadable": Cause("corrupt", (
            big_png[:30], _flipped(big_png, 29), _png_with_header(7, 2), _png_with_header(8, 9),
        )),
        "png-data-ends-early": Cause("truncated", tuple(big_png[:n] for n in (60, 1000, 20_000, 50_000))),
        "png-data-damaged": Cause("corrupt", tuple(
            _overwritten(big_png, offset, 50, offset) for offset in (100, 2000, 10_000, 40_000, 80_000)
        )),
        "gif-data-ends-early": Cause("truncated", (gif[: len(gif) // 2], gif[: len(gif) * 3 // 4])),
        "tiff-data-ends-early": Cause("truncated", (tiff[: len(tiff) // 2], tiff[: len(tiff) // 3])),
        "webp-header-unreadable": Cause("corrupt", (
            webp[:60], b"RIFF\x40\x00\x00\x00WEBPVP8 " + random.Random(5).randbytes(60),
        )),
    }



def files_of(cause: Cause, max_bytes: int) -> tuple[bytes, ...]:
    return cause.files + tuple(bytes(max_bytes + extra) for extra in cause.bytes_over_limit)


def assert_one_group_per_cause(refusals: Iterable[tuple[str, str, str]], corpus: dict[str, Cause]) -> None:
    """``refusals`` are (cause, code, message) per file: grouped by message, every cause is
    exactly one group, of its own code, and no message carries run- or file-specific noise."""
    causes_by_message: dict[str, set[str]] = {}
    messages_by_cause: dict[str, set[str]] = {}
    for cause, code, message in refusals:
        assert code == corpus[cause].code, (cause, code, message)
        assert not NOISE.search(message), message
        causes_by_message.setdefault(message, set()).add(cause)
        messages_by_cause.setdefault(cause, set()).add(message)
    split = {cause: messages for cause, messages in messages_by_cause.items() if len(messages) > 1}
    merged = {message: causes for message, causes in causes_by_message.items() if len(causes) > 1}
    assert not split, f"causes with more than one message: {split}"
    assert not merged, f"messages shared by several causes: {merged}"
    assert set(messages_by_cause) == set(corpus)
    assert len(causes_by_message) == len(corpus)
    for cause, message in NAMED.items():
        assert messages_by_cause[cause] == {message}, (cause, messages_by_cause[cause])
