"""Bytes -> RGB sRGB image, refusing unsafe or broken input before it costs memory.

The format is sniffed from the bytes (never the file name) and only JPEG, PNG/APNG, WebP,
GIF, TIFF and BMP are opened, so Pillow never reaches plugins such as EPS.  Size and pixel
limits are checked from the header, before any pixel data is decoded.  Pillow's global
``MAX_IMAGE_PIXELS`` is left alone: its warning is silenced here (our own limit decides)
and its hard error, which can fire first for enormous headers, becomes ``too_many_pixels``.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageCms

from . import errors
from .formats import ACCEPTED as ALLOWED_FORMATS
from .formats import refusal_for, sniff
from .presets import SizePreset

RGB = tuple[int, int, int]

MAX_LONG_SIDE = 8000  # the old service's OOM guard
WHITE: RGB = (255, 255, 255)

_DECODER_STATUSES = (  # libImaging's codec statuses and Pillow's own load errors
    "broken data stream", "unrecognized data stream contents", "buffer overrun", "codec configuration error",
    "out of memory", "decoding error", "image was incomplete", "broken png file", "not enough image data",
    "image file is truncated", "truncated file read", "truncated png file",
)
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")
_SUPPORTED_MODES = frozenset(
    ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", *_ALPHA, *_SIXTEEN_BIT)
)
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@dataclass(frozen=True)
class DecodeLimits:
    """Refuse files over ``max_bytes`` and images over ``max_pixels`` (from the header)."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 100_000_000


@dataclass(frozen=True)
class ImageInfo:
    """What the source is; ``width``/``height`` are full-size and EXIF-oriented."""

    format: str
    width: int
    height: int
    mode: str
    frames: int
    orientation: int
    icc_profile: str | None
    has_alpha: bool
    byte_size: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class DecodedImage:
    """An RGB sRGB image plus what the source was; ``image`` may be smaller than the source."""

    image: Image.Image
    info: ImageInfo

    @property
    def scale(self) -> float:
        """Decoded size / source size (< 1 after JPEG draft decoding or the 8000 px cap)."""
        return self.image.width / self.info.width


def probe(data: bytes, *, limits: DecodeLimits = DecodeLimits()) -> ImageInfo:
    """Validate ``data`` completely (all image data is decoded) without rendering.

    JPEGs are decoded at 1/8 scale: the entropy decoder still reads every byte, so
    truncation is caught at a fraction of the cost.
    """
    image = _open(data, limits)
    info = _info(image, len(data))
    if image.format in ("JPEG", "MPO"):
        image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
    _load(image, limits)
    return info


def decode(
    data: bytes,
    *,
    limits: DecodeLimits = DecodeLimits(),
    fit: SizePreset | None = None,
    background: RGB = WHITE,
    grey: bool = False,
) -> DecodedImage:
    """Decode the first frame to RGB sRGB: EXIF-oriented, ICC-converted, alpha flattened.

    ``fit`` is the preset the image will be preprocessed for; a JPEG is then decoded at the
    DCT scale ``draft_scale`` picks for that preset, several times cheaper than a full
    decode.  ``grey`` asks for sRGB luma (mode ``L``) instead: a colour JPEG without a
    non-sRGB profile then decodes its luma plane only, skipping the chroma work (about a
    quarter of the decode).  The long side is capped at 8000 px.
    """
    image = _open(data, limits)
    info = _info(image, len(data))
    if image.format in ("JPEG", "MPO"):
        _draft(image, info, fit, grey)
    _load(image, limits)
    image = _to_srgb(image, background, "L" if grey else "RGB")
    if max(image.size) > MAX_LONG_SIDE:
        scale = MAX_LONG_SIDE / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    if info.orientation in _ORIENT:
        image = image.transpose(_ORIENT[info.orientation])
    return DecodedImage(image=image, info=info)


def decode_for_presets(
    data: bytes,
    presets: Sequence[SizePreset],
    *,
    limits: DecodeLimits = DecodeLimits(),
    background: RGB = WHITE,
    grey: bool = False,
) -> Iterator[tuple[DecodedImage, tuple[SizePreset, ...]]]:
    """One source rendered at several presets: decode once per distinct draft scale.

    Yields each decoded image with the presets it serves, one image at a time.  Each
    preset's image is exactly ``decode(data, fit=preset)``, so a render's pixels never
    depend on which other presets, styles or uploads share its decode.
    """
    for group in draft_groups(read_info(data, limits=limits), presets).values():
        yield decode(data, limits=limits, fit=group[0], background=background, grey=grey), group


def read_info(data: bytes, *, limits: DecodeLimits = DecodeLimits()) -> ImageInfo:
    """What the header says (format, oriented size, profile), with the limits applied; no
    pixel data is decoded."""
    return _info(_open(data, limits), len(data))


def draft_groups(info: ImageInfo, presets: Sequence[SizePreset]) -> dict[int, tuple[SizePreset, ...]]:
    """``presets`` (deduplicated, in order) grouped by ``draft_scale``: one decode per group."""
    groups: dict[int, list[SizePreset]] = {}
    for preset in dict.fromkeys(presets):
        groups.setdefault(draft_scale(info, preset), []).append(preset)
    return {scale: tuple(group) for scale, group in groups.items()}


def draft_scale(info: ImageInfo, preset: SizePreset) -> int:
    """The JPEG DCT reduction (1, 2, 4 or 8) a render of ``preset`` decodes ``info``'s source
    at: the largest that still covers the preset (and the 8000 px cap).  It depends on the
    source and this one preset alone.  Other formats always decode at full size (1)."""
    if info.format != "JPEG":
        return 1
    need = min(1.0, preset.scale_for(info.width, info.height), MAX_LONG_SIDE / max(info.width, info.height))
    if need > 0.5:
        return 1
    fits = min(info.width // math.ceil(info.width * need), info.height // math.ceil(info.height * need))
    return max(d for d in (1, 2, 4, 8) if d <= fits)


def _open(data: bytes, limits: DecodeLimits) -> Image.Image:
    if not data:
        raise errors.empty()
    if len(data) > limits.max_bytes:
        raise errors.too_large(len(data), limits.max_bytes)
    sniffed = sniff(data)
    if sniffed is None:
        raise refusal_for(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise errors.too_many_pixels(limits.max_pixels) from None
    except MemoryError:
        raise
    except Exception as exc:  # UnidentifiedImageError and whatever a plugin raised
        if _is_truncation(exc):
            raise errors.header_ends_early(sniffed) from None
        raise errors.header_unreadable(sniffed) from None
    width, height = image.size
    if width < 1 or height < 1:
        raise errors.no_pixels(sniffed, image.size)
    if width * height > limits.max_pixels:
        raise errors.too_many_pixels(limits.max_pixels, image.size)
    if image.mode not in _SUPPORTED_MODES:
        raise errors.unsupported(f"{sniffed} with Pillow mode {image.mode}")
    return image


def _info(image: Image.Image, byte_size: int) -> ImageInfo:
    orientation = _orientation(image)
    width, height = image.size
    if orientation >= 5:
        width, height = height, width
    icc = image.info.get("icc_profile")
    return ImageInfo(
        format=_format_name(image),
        width=width,
        height=height,
        mode=image.mode,
        frames=getattr(image, "n_frames", 1),
        orientation=orientation,
        icc_profile=(_profile_name(icc) or "invalid") if icc else None,
        has_alpha=image.mode in _ALPHA or "transparency" in image.info,
        byte_size=byte_size,
    )


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8 (1 if absent or unreadable), without decoding pixel data."""
    try:
        if image.format == "PNG":  # Pillow's getexif() decodes a whole PNG to find a late eXIf
            exif = Image.Exif()
            if "exif" in image.info:
                exif.load(image.info["exif"])
        else:
            exif = image.getexif()
        value = exif.get(0x0112, 1)
    except Exception:  # a damaged EXIF block must not reject an otherwise good image
        return 1
    return value if value in _ORIENT else 1


def _draft(image: Image.Image, info: ImageInfo, fit: SizePreset | None, grey: bool) -> None:
    """Ask libjpeg for less: the preset's reduced DCT scale, and only the luma plane when
    that is all the caller needs and it is sRGB luma."""
    srgb = info.icc_profile is None or info.icc_profile.lower().startswith("srgb")
    mode = "L" if grey and image.mode == "RGB" and srgb else image.mode
    scale = draft_scale(info, fit) if fit is not None else 1
    # Pillow picks the largest DCT scale whose image is at least the requested size.
    size = (max(1, image.width // scale), max(1, image.height // scale)) if scale > 1 else None
    if mode != image.mode or size:
        image.draft(mode, size)


def _load(image: Image.Image, limits: DecodeLimits) -> None:
    fmt = _format_name(image)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Image.DecompressionBombError:
        raise errors.too_many_pixels(limits.max_pixels) from None
    except MemoryError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, ...
        if _is_truncation(exc):
            raise errors.data_ends_early(fmt, _decoder_status(exc)) from None
        raise errors.data_damaged(fmt, _decoder_status(exc)) from None


def _is_truncation(exc: Exception) -> bool:
    return isinstance(exc, EOFError) or "truncat" in str(exc).lower()


def _decoder_status(exc: Exception) -> str | None:
    """The codec status in Pillow's message ("broken data stream", ...), from a fixed list."""
    text = str(exc).lower()
    return next((status for status in _DECODER_STATUSES if status in text), None)


def _format_name(image: Image.Image) -> str:
    return "JPEG" if image.format == "MPO" else str(image.format)


def _to_srgb(image: Image.Image, background: RGB, mode: str) -> Image.Image:
    """``image`` in sRGB as ``mode`` (``RGB`` or ``L``), alpha flattened onto ``background``."""
    icc = image.info.get("icc_profile")
    if image.mode in _SIXTEEN_BIT:
        wide = np.clip(np.asarray(image, dtype=np.uint32), 0, 65535)
        image = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")
    if image.mode in _ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (*background, 255))
        flat.alpha_composite(rgba)
        image = flat
    name = _profile_name(icc) if icc else None
    if name and not name.lower().startswith("srgb"):  # sRGB-tagged data needs no transform
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            source_mode = image.mode if image.mode in ("RGB", "CMYK", "L") else "RGB"
            image = ImageCms.profileToProfile(
                image.convert(source_mode), source, _SRGB, outputMode="RGB",
                renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            )
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken or mismatched profile: fall back to treating the data as sRGB
    return image if image.mode == mode else image.convert(mode)


def _profile_name(icc: bytes) -> str | None:
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None
