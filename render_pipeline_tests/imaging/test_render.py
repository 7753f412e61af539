"""render(): metadata, encoding, golden hashes, and determinism across processes and threads."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

from PIL import Image

from render_pipeline.imaging import (
    ENGINE_VERSION,
    PRESETS,
    decode,
    encode_png,
    get_style,
    make_preview,
    pixel_sha256,
    preprocess,
    render,
)

from .golden import fingerprints
from .inputs import jpeg

REPO = Path(__file__).resolve().parents[2]

# Update procedure: see golden.py (bump the style's version first).
GOLDEN = {
    "pop-poster/png-640x480@play-phone": {"png": "2db0467ba90cb9e2", "pixels": "6ee1efc2e043ecc4", "preview": "97c4a38786fed0c5"},
    "halftone/png-640x480@play-phone": {"png": "ce8ff9f6da14bd7f", "pixels": "16934123b917e28e", "preview": "c9c5e6429990a98c"},
    "warhol-grid/png-640x480@play-phone": {"png": "6c3e12dbb09c8342", "pixels": "5b34046a84d01a64", "preview": "e6fa5c268adb50d4"},
    "duotone/png-640x480@play-phone": {"png": "3bca93cb71bd9af5", "pixels": "141b5820ea319ae1", "preview": "c412b89dca71f81f"},
    "pop-poster/jpeg-2600x1950@play-feature": {"png": "5303ebceb695adfe", "pixels": "254c06bd55df02d5", "preview": "29c070b0b835ca24"},
    "halftone/jpeg-2600x1950@play-feature": {"png": "e9694eb06902174e", "pixels": "81cd7b3105e93002", "preview": "40c3536163f34912"},
    "warhol-grid/jpeg-2600x1950@play-feature": {"png": "e7d332ae2d767337", "pixels": "8a69606e1dbe03d3", "preview": "6eaf112b6e2227b0"},
    "duotone/jpeg-2600x1950@play-feature": {"png": "bb388be059caa48d", "pixels": "a85b50e543a3f1bd", "preview": "5bab0040ec123422"},
}


def png_chunks(data: bytes) -> list[bytes]:
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        chunks.append(kind)
        offset += 12 + length
    return chunks


def test_golden_fingerprints() -> None:
    assert fingerprints() == GOLDEN


def test_identical_across_processes_omp_and_opencv_thread_counts() -> None:
    code = (
        "import cv2, json, sys; cv2.setNumThreads(int(sys.argv[1])); "
        "from render_pipeline_tests.imaging.golden import fingerprints; print(json.dumps(fingerprints()))"
    )
    runs = []
    for omp, cv_threads in (("1", "1"), ("2", "2"), ("1", "0"), ("2", "4")):
        env = {**os.environ, "OMP_NUM_THREADS": omp, "PYTHONPATH": str(REPO)}
        runs.append(subprocess.Popen([sys.executable, "-c", code, cv_threads], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert json.loads(out) == GOLDEN


def test_metadata_is_complete_and_json_serialisable() -> None:
    result = render(jpeg(800, 600), "pop-poster", "square-1024", {"k": 5})
    meta = json.loads(json.dumps(result.metadata))
    assert meta["engine_version"] == ENGINE_VERSION
    assert (meta["style"], meta["style_version"], meta["preset"]) == ("pop-poster", 2, "square-1024")
    assert (meta["width"], meta["height"], meta["fit"]) == (1024, 1024, "cover")
    assert meta["config"] == {**get_style("pop-poster").default_config, "k": 5}
    assert 2 <= len(meta["palette"]) <= 5 and all(len(c) == 7 and c[0] == "#" for c in meta["palette"])
    assert set(meta["timings_ms"]) == {"decode", "preprocess", "quantize", "compose", "encode"}
    assert meta["source"]["format"] == "JPEG" and meta["source"]["width"] == 800
    assert set(meta["versions"]) == {"pillow", "numpy", "opencv", "zlib"}
    assert len(meta["pixels_sha256"]) == 64


def test_output_png_is_exact_size_srgb_and_carries_no_other_metadata() -> None:
    result = render(jpeg(800, 600), "halftone", "play-feature")
    output = Image.open(io.BytesIO(result.output_png))
    assert output.size == (1024, 500)
    chunks = png_chunks(result.output_png)
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    assert set(chunks) <= {b"IHDR", b"sRGB", b"PLTE", b"IDAT", b"IEND"}
    assert chunks.index(b"sRGB") < chunks.index(b"PLTE") < chunks.index(b"IDAT")


def test_preview_is_a_512px_jpeg_without_metadata() -> None:
    result = render(jpeg(800, 600), "duotone", "iphone-6.7")
    preview = Image.open(io.BytesIO(result.preview_jpeg))
    assert preview.format == "JPEG" and max(preview.size) == 512 and preview.size == (236, 512)
    assert "exif" not in preview.info and "icc_profile" not in preview.info


def test_render_is_the_composition_of_the_public_stages() -> None:
    data, spec, preset = jpeg(1200, 900), get_style("warhol-grid"), PRESETS["ipad-13"]
    config = spec.validate_config({"rows": 3, "cols": 2})
    decoded = decode(data, fit=[preset])
    pixels = preprocess(decoded, preset)
    image = spec.compose(pixels, spec.quantize(pixels, config), preset, config)
    result = render(data, "warhol-grid", "ipad-13", {"rows": 3, "cols": 2})
    assert encode_png(image) == result.output_png
    assert make_preview(image) == result.preview_jpeg
    assert pixel_sha256(image) == result.metadata["pixels_sha256"]
