"""What a file is, from its first bytes alone: one of the formats the engine opens, or a name
for the one it refuses.

Refused files are named from signatures (FITS, Netpbm, PDF, SVG, HEIF/AVIF brands, PSD, ...)
and then from the signature checks Pillow's plugins register; those only compare bytes, so no
plugin that is not accepted ever parses the file.  Names come from fixed tables, never from the
file, so every refusal for one format reads the same.
"""

from __future__ import annotations

import re
import struct

from PIL import Image

from . import errors
from .errors import ImageRejected

ACCEPTED = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")  # JPEG also yields MPO (camera multi-picture)
ACCEPTED_NAMES = "JPEG, PNG, WebP, GIF, TIFF or BMP"

_ACCEPTED_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
_NETPBM = "PBM/PGM/PPM/PAM (Netpbm)"
_SIGNATURES = (  # (regular expression matched at the start, name)
    (rb"SIMPLE  =", "FITS"),
    (rb"P[1-7][ \t\r\n]", _NETPBM),
    (rb"P[Ff][ \t\r\n]", "PFM (portable float map)"),
    (rb"%PDF-", "PDF"),
    (rb"%!PS|\xc5\xd0\xd3\xc6", "PostScript/EPS"),
    (rb"8BPS", "PSD (Photoshop)"),
    (rb"\x00\x00\x01\x00(?!\x00\x00)", "ICO (Windows icon)"),  # reserved, type, image count >= 1
    (rb"\x00\x00\x02\x00(?!\x00\x00)", "CUR (Windows cursor)"),
    (rb"II\+\x00|MM\x00\+", "BigTIFF"),
    (rb"\x00\x00\x00\x0cjP  \r\n\x87\n|\xffO\xffQ", "JPEG 2000"),
    (rb"\x00\x00\x00\x0cJXL \r\n\x87\n|\xff\x0a", "JPEG XL"),
    (rb"qoif", "QOI"),
    (rb"DDS ", "DDS (DirectDraw surface)"),
    (rb"icns", "ICNS (Apple icon)"),
    (rb"RIFF....(?:AVI |WAVE)", "RIFF audio/video"),
    (rb".{128}DICM", "DICOM"),
)
_SIGNATURE_RES = tuple((re.compile(pattern, re.DOTALL), name) for pattern, name in _SIGNATURES)
_BRANDS = (  # ISO base media (ftyp) brands, most specific first
    ((b"avif", b"avis"), "AVIF"),
    ((b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"), "HEIC/HEIF"),
    ((b"crx ",), "CR3 (Canon raw)"),
)
_TGA_FOOTER = b"TRUEVISION-XFILE.\x00"
# Pillow's checks for these are looser than the signatures above (its CUR check also matches
# uncompressed TGA files), so the signatures alone decide them.
_PILLOW_COVERED = frozenset(
    ("CUR", "ICO", "PPM", "FITS", "PSD", "EPS", "JPEG2000", "QOI", "DDS", "ICNS", "AVIF", "MPO")
)
_SVG = re.compile(  # an optional XML declaration, comments and doctype, then the <svg> element
    rb"\A(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!doctype svg[^>]*>\s*)?(?:<!--.*?-->\s*)*<svg[\s>]",
    re.IGNORECASE | re.DOTALL,
)


def sniff(data: bytes) -> str | None:
    """The accepted format ``data`` starts like, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _ACCEPTED_MAGIC if data.startswith(magic)), None)


def refused_name(data: bytes) -> str | None:
    """The name of the (not accepted) image or document format ``data`` starts like, or None."""
    name = next((name for pattern, name in _SIGNATURE_RES if pattern.match(data)), None)
    if name is None and data.endswith(_TGA_FOOTER):
        name = "TGA"
    if name is None and data[4:8] == b"ftyp":
        name = _iso_media_name(data)
    head = _text_head(data)
    if name is None and head is not None and _SVG.match(head):
        name = "SVG"
    return name or _pillow_name(data)


def refusal_for(data: bytes) -> ImageRejected:
    """Why non-empty ``data`` that ``sniff`` does not know is refused, in a fixed sentence."""
    name = refused_name(data)
    if name is not None:
        return errors.unsupported(name)
    head = _text_head(data)
    if head is None:
        return errors.not_an_image(f"the file is not a {ACCEPTED_NAMES} image")
    if b"<html" in head.lower() or head.lower().startswith(b"<!doctype html"):
        return errors.not_an_image("the file is an HTML page, not an image")
    return errors.not_an_image("the file is text, not an image")


def _iso_media_name(data: bytes) -> str:
    """HEIC/AVIF/... from the major and compatible brands of the leading ``ftyp`` box."""
    size = struct.unpack(">I", data[:4])[0]
    box = data[8 : min(max(size, 16), 256)]
    brands = {box[i : i + 4] for i in range(0, len(box) - 3, 4) if i != 4}  # skip minor_version
    named = (name for options, name in _BRANDS if brands.intersection(options))
    return next(named, "ISO base media (MP4/MOV)")


def _pillow_name(data: bytes) -> str | None:
    """A format Pillow recognises from its prefix check, among those the engine does not open."""
    Image.init()
    prefix = data[:16]
    for format_id, (_factory, accept) in Image.OPEN.items():
        if format_id in ACCEPTED or format_id in _PILLOW_COVERED or accept is None:
            continue
        try:
            if accept(prefix):
                return format_id
        except Exception:  # a plugin's check must not decide the refusal
            continue
    return None


def _text_head(data: bytes) -> bytes | None:
    """The first 4 KiB with leading whitespace/BOM stripped, if it reads as UTF-8 text."""
    head = data[:4096]
    for cut in range(4):  # a multi-byte character may be split at the 4 KiB boundary
        try:
            text = head[: len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    if any(ord(ch) < 32 and ch not in "\t\r\n\f" for ch in text) or "\x7f" in text:
        return None
    return head.lstrip(b"\xef\xbb\xbf").lstrip()
