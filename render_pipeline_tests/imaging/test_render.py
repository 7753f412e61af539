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
    STAGES,
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
    "pop-poster/png-640x480@play-phone": {"png": "9839d0e5c88b0a36", "pixels": "1ae113826662bbab", "preview": "af3922d442aec8f7"},
    "halftone/png-640x480@play-phone": {"png": "adf9c923901d1863", "pixels": "80c58d660b0de911", "preview": "788b0b5ff1273048"},
    "warhol-grid/png-640x480@play-phone": {"png": "b4a9767e2d6da65b", "pixels": "5c2228046387ec52", "preview": "43d6567ebf5e9485"},
    "duotone/png-640x480@play-phone": {"png": "79b2ec4b23c4fb1e", "pixels": "ee880fa6bf10c862", "preview": "ff8e2f1dd22f6f7f"},
    "pop-poster/jpeg-2600x1950@play-feature": {"png": "72677abd2fdb86c4", "pixels": "0c06dfe11f246ba6", "preview": "5169dfaa8ff19d4b"},
    "halftone/jpeg-2600x1950@play-feature": {"png": "77a16a3a5c24641f", "pixels": "47ef9f7b44855e6e", "preview": "6cee624f5683e4b5"},
    "warhol-grid/jpeg-2600x1950@play-feature": {"png": "1d00cacd53196646", "pixels": "55e5c574ccda6080", "preview": "db19252a0c4339c9"},
    "duotone/jpeg-2600x1950@play-feature": {"png": "ca0d39a10efa9d61", "pixels": "6e0287f9e858847b", "preview": "b9c552bca5f0fba9"},
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
    assert (meta["style"], meta["style_version"], meta["preset"]) == ("pop-poster", 3, "square-1024")
    assert (meta["width"], meta["height"], meta["fit"]) == (1024, 1024, "cover")
    assert meta["config"] == {**get_style("pop-poster").default_config, "k": 5}
    # the colours drawn: up to k poster colours, then the ink
    assert 3 <= len(meta["palette"]) <= 6 and meta["palette"][-1] == "#0c0c10"
    assert all(len(c) == 7 and c[0] == "#" for c in meta["palette"])
    assert tuple(meta["timings_ms"]) == STAGES
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
    decoded = decode(data, fit=preset)
    pixels = preprocess(decoded, preset)
    image = spec.compose(pixels, spec.quantize(pixels, config), preset, config)
    result = render(data, "warhol-grid", "ipad-13", {"rows": 3, "cols": 2})
    assert encode_png(image) == result.output_png
    assert make_preview(image) == result.preview_jpeg
    assert pixel_sha256(image) == result.metadata["pixels_sha256"]
