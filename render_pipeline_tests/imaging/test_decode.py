"""Decoding: every accepted format renders the right pixels; every bad file is refused by code."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image, ImageOps

from render_pipeline.imaging import (
    DecodeLimits,
    ImageRejected,
    decode,
    decode_for_presets,
    draft_scale,
    get_preset,
    probe,
    read_info,
    render,
)

from .inputs import (
    animated,
    cv2_encoded,
    encoded,
    gif_bomb,
    jpeg,
    photo,
    png,
    png_header_only,
    swapped_primaries_profile,
    with_orientation,
)

RED, BLUE = (220, 30, 40), (30, 60, 210)


def _mean(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=float).reshape(-1, 3).mean(0)


def _accepted() -> dict[str, tuple[bytes, tuple[int, int, int]]]:
    """Name -> (file bytes, expected mean colour after decoding) for each accepted input kind."""
    rgb = Image.new("RGB", (64, 48), RED)
    grey16 = np.full((48, 64), 128 * 257, np.uint16)
    rgb16 = np.zeros((48, 64, 3), np.uint16) + np.array(RED, np.uint16) * 257
    rgba = Image.new("RGBA", (64, 48), (*RED, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 32, 48))  # left half fully transparent -> white
    half_white = tuple(round((c + 255) / 2) for c in RED)
    palette = Image.new("P", (64, 48), 1)
    palette.putpalette([0, 0, 0, *RED] + [0] * 762)
    return {
        "jpeg-baseline": (encoded(rgb, "JPEG", quality=95), RED),
        "jpeg-progressive": (encoded(rgb, "JPEG", quality=95, progressive=True), RED),
        "jpeg-cmyk-no-profile": (encoded(rgb.convert("CMYK"), "JPEG", quality=95), RED),
        "png-rgb": (encoded(rgb, "PNG"), RED),
        "png-rgba-half-transparent": (encoded(rgba, "PNG"), half_white),
        "png-palette-trns": (encoded(palette, "PNG", transparency=0), RED),
        "png-grey": (encoded(rgb.convert("L"), "PNG"), (90,) * 3),
        "png-1bit": (encoded(Image.new("1", (64, 48), 1), "PNG"), (255, 255, 255)),
        "png-grey-16bit": (encoded(Image.fromarray(grey16), "PNG"), (128, 128, 128)),
        "png-rgb-16bit": (cv2_encoded(rgb16, ".png"), RED),
        "apng-first-frame": (animated("PNG", [RED, BLUE]), RED),
        "webp-lossless": (encoded(rgb, "WEBP", lossless=True), RED),
        "webp-animated-first-frame": (animated("WEBP", [RED, BLUE], lossless=True), RED),
        "gif": (encoded(rgb.quantize(4), "GIF"), RED),
        "gif-animated-first-frame": (animated("GIF", [RED, BLUE]), RED),
        "tiff-rgb": (encoded(rgb, "TIFF"), RED),
        "tiff-cmyk": (encoded(rgb.convert("CMYK"), "TIFF"), RED),
        "tiff-16bit": (cv2_encoded(rgb16, ".tiff"), RED),
        "bmp": (encoded(rgb, "BMP"), RED),
    }


@pytest.mark.parametrize("name", list(_accepted()))
def test_accepted_formats_decode_to_rgb_with_the_right_colours(name: str) -> None:
    data, expected = _accepted()[name]
    decoded = decode(data)
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (64, 48)
    assert np.abs(_mean(decoded.image) - expected).max() <= 6, _mean(decoded.image)
    assert probe(data) == decoded.info


def test_grey_of_the_right_value_not_white_from_16_bit() -> None:
    data = encoded(Image.fromarray(np.full((8, 8), 1000, np.uint16)), "PNG")
    assert decode(data).image.getpixel((0, 0)) == (4, 4, 4)  # 1000 / 257, not clipped to 255


def test_embedded_icc_profile_is_converted_to_srgb() -> None:
    profile = swapped_primaries_profile()
    red = Image.new("RGB", (16, 16), (255, 0, 0))
    for data in (encoded(red, "PNG", icc_profile=profile), encoded(red, "JPEG", quality=95, icc_profile=profile)):
        decoded = decode(data)
        assert decoded.info.icc_profile == "Swap built-in"
        r, g, b = decoded.image.getpixel((8, 8))
        assert b > 240 and r < 15 and g < 15  # red data through swapped primaries is blue


def test_srgb_profile_is_identity() -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = photo(64, 48)
    assert decode(encoded(source, "PNG", icc_profile=srgb)).image.tobytes() == source.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    source = Image.new("RGB", (60, 40), RED)
    source.paste(BLUE, (0, 0, 20, 10))  # a corner marker
    data = with_orientation(source, orientation)
    expected = ImageOps.exif_transpose(Image.open(__import__("io").BytesIO(data)))
    decoded = decode(data)
    assert decoded.info.orientation == orientation
    assert decoded.image.size == expected.size == (decoded.info.width, decoded.info.height)
    assert np.abs(np.asarray(decoded.image, int) - np.asarray(expected.convert("RGB"), int)).max() <= 2


def test_jpeg_draft_decoding_keeps_enough_pixels_for_its_preset() -> None:
    data = jpeg(2400, 3200)
    for preset_id, size in (("square-1024", (1200, 1600)), ("play-feature", (600, 800))):
        decoded = decode(data, fit=get_preset(preset_id))
        assert decoded.image.size == size  # the smallest DCT scale that still covers the preset
        assert get_preset(preset_id).scale_for(*decoded.image.size) <= 1
    assert decode(data, fit=get_preset("iphone-6.9")).image.size == (2400, 3200)


def test_presets_decode_once_per_draft_scale_and_each_as_if_alone() -> None:
    data = jpeg(4000, 3000)
    presets = [get_preset(p) for p in ("iphone-6.9", "square-1024", "play-phone", "play-feature")]
    groups = list(decode_for_presets(data, presets))
    assert [[p.id for p in group] for _, group in groups] == [["iphone-6.9", "play-phone"], ["square-1024"], ["play-feature"]]
    for decoded, group in groups:
        for preset in group:
            alone = decode(data, fit=preset)
            assert alone.image.size == decoded.image.size
            assert alone.image.tobytes() == decoded.image.tobytes()
    # The rule depends on the preset alone: adding presets never changes another's decode.
    info = read_info(data)
    assert draft_scale(info, get_preset("square-1024")) == 2 and draft_scale(info, get_preset("iphone-6.9")) == 1


def test_9000x6000_photo_is_capped_at_8000_and_renders() -> None:
    data = jpeg(9000, 6000, quality=70)
    decoded = decode(data)
    assert decoded.image.size == (8000, 5333)
    assert decoded.info.width == 9000
    assert render(data, "pop-poster", "play-feature").metadata["source"]["width"] == 9000


def test_1x1_image_renders_in_every_style() -> None:
    from render_pipeline.imaging import STYLES

    data = encoded(Image.new("RGB", (1, 1), RED), "PNG")
    for style in STYLES:
        assert render(data, style, "square-1024").metadata["width"] == 1024


BAD = {
    "empty": (b"", "empty"),
    "text-named-jpg": (b"hello, this is not a photo\n" * 10, "unsupported_format"),
    "html": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "unsupported_format"),
    "random-binary": (bytes(range(256)) * 4, "unsupported_format"),
    "ico": (encoded(Image.new("RGB", (16, 16)), "ICO"), "unsupported_format"),
    "jpeg-truncated": (jpeg()[:4000], "truncated"),
    "jpeg-progressive-truncated": (jpeg(progressive=True)[:4000], "truncated"),
    "png-truncated": (png()[:20000], "truncated"),
    "png-header-only": (png()[:30], "corrupt"),
    "png-100000x100000": (png_header_only(100_000, 100_000), "too_many_pixels"),
    "png-12000x10000": (png_header_only(12_000, 10_000), "too_many_pixels"),
    "gif-bomb": (gif_bomb(), "too_many_pixels"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_refused_quickly_with_a_stable_code(name: str) -> None:
    data, code = BAD[name]
    for stage in (probe, decode, lambda d: render(d, "pop-poster", "square-1024")):
        start = time.perf_counter()
        with pytest.raises(ImageRejected) as caught:
            stage(data)
        assert time.perf_counter() - start < 2
        assert caught.value.code == code
        assert str(caught.value) == f"{code}: {caught.value.reason}"


def test_damaged_png_data_is_corrupt() -> None:
    data = bytearray(png())
    data[2000:2400] = b"\xff" * 400
    with pytest.raises(ImageRejected, match="^corrupt: "):
        decode(bytes(data))


def test_limits_are_configurable() -> None:
    data = png(64, 48)
    with pytest.raises(ImageRejected, match="^too_large: "):
        decode(data, limits=DecodeLimits(max_bytes=100))
    with pytest.raises(ImageRejected, match="^too_many_pixels: "):
        probe(data, limits=DecodeLimits(max_pixels=64 * 48 - 1))
    assert probe(data, limits=DecodeLimits(max_pixels=64 * 48)).width == 64


def test_refusal_reasons_say_what_the_file_is() -> None:
    with pytest.raises(ImageRejected, match="HTML page"):
        decode(BAD["html"][0])
    with pytest.raises(ImageRejected, match="text, not an image"):
        decode(BAD["text-named-jpg"][0])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_grey_decode_is_the_luma_of_the_colour_decode(fmt: str) -> None:
    data = encoded(photo(400, 300, seed=3), fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    colour, grey = decode(data).image, decode(data, grey=True).image
    assert grey.mode == "L" and grey.size == colour.size
    difference = np.abs(np.asarray(grey, int) - np.asarray(colour.convert("L"), int))
    # JPEG: libjpeg's own Y plane, which skips the RGB round trip's clipping and rounding
    assert difference.max() <= 4 and difference.mean() < 0.05


def test_grey_decode_of_a_jpeg_with_a_foreign_profile_goes_through_colour_management() -> None:
    red = Image.new("RGB", (16, 16), (255, 0, 0))
    data = encoded(red, "JPEG", quality=95, icc_profile=swapped_primaries_profile())
    # red data through swapped primaries is blue: sRGB luma of blue (~29), not of red (~76)
    assert abs(decode(data, grey=True).image.getpixel((8, 8)) - 29) <= 3


def test_grey_decode_keeps_draft_scaling() -> None:
    data = jpeg(2400, 3200)
    decoded = decode(data, fit=get_preset("square-1024"), grey=True)
    assert decoded.image.mode == "L" and decoded.image.size == (1200, 1600)
