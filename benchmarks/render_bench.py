"""Render benchmark: per-stage medians per style, against two baselines measured in the same run.

- naive: what the old service did -- Pillow decode, LANCZOS fit to the preset, scikit-learn
  KMeans(k, n_init=1, random_state=0) on every output pixel, reconstruct, default PNG;
- floor: decode + preprocess + PNG encode of the fitted RGB image, with the engine's settings;
- io:    decode + preprocess alone (what any render must pay before styling).

The naive path's cost is mostly scikit-learn's k-means, whose iteration count depends on the
picture, so ``iters`` reports it.  Besides the generated photos, the real photos in
../shared/samples (when present) are measured too: upscaled to 12 MP with the generated
photos' grain, so their JPEGs cost as much to decode as a camera's.

Usage: PYTHONPATH=. python benchmarks/render_bench.py [--quick] [--preset iphone-6.7]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from render_pipeline.imaging import STYLES, decode, encode_png, get_preset, get_style, preprocess, render
from render_pipeline.imaging.synthetic import photo_like, with_grain

SIZES = {"3 MP": (2000, 1500), "12 MP": (4000, 3000), "24 MP": (6000, 4000)}
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
STAGES = ("decode", "preprocess", "quantize", "compose", "encode")  # encode: PNG and preview, concurrently
# VmHWM (peak RSS of this process image), not ru_maxrss, which Linux carries over from
# the forking parent.
RSS_CHILD = """
import re, sys
sys.path.insert(0, ".")
from benchmarks.render_bench import naive
from render_pipeline.imaging import render
peak = lambda: re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
data = open(sys.argv[1], "rb").read()
before = peak()
(naive if sys.argv[4] == "naive" else render)(data, sys.argv[2], sys.argv[3])
print(before, peak())
"""


def photo_jpeg(width: int, height: int) -> bytes:
    return _jpeg(photo_like(width, height, seed=42))


def sample_jpeg(path: Path, width: int, height: int) -> bytes:
    """A real photo cover-fitted to ``width`` x ``height`` (cubic), with grain."""
    source = np.asarray(ImageOps.fit(Image.open(path).convert("RGB"), (width // 4, height // 4)))
    return _jpeg(with_grain(cv2.resize(source, (width, height), interpolation=cv2.INTER_CUBIC), seed=42))


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def naive(data: bytes, style: str, preset_id: str) -> tuple[bytes, int]:
    """The old service's path, for comparison only: (PNG, k-means iterations it took)."""
    from sklearn.cluster import KMeans

    preset = get_preset(preset_id)
    image = ImageOps.fit(Image.open(io.BytesIO(data)).convert("RGB"), (preset.width, preset.height),
                         Image.Resampling.LANCZOS)
    pixels = np.asarray(image).reshape(-1, 3).astype(np.float64)
    k = get_style(style).default_config.get("k", 4)
    model = KMeans(k, n_init=1, random_state=0).fit(pixels)
    rebuilt = model.cluster_centers_.round().astype(np.uint8)[model.labels_].reshape(preset.height, preset.width, 3)
    buffer = io.BytesIO()
    Image.fromarray(rebuilt).save(buffer, "PNG")
    return buffer.getvalue(), int(model.n_iter_)


def floor(data: bytes, preset_id: str, *, encode: bool) -> None:
    preset = get_preset(preset_id)
    pixels = preprocess(decode(data, fit=(preset,)), preset)
    if encode:
        encode_png(Image.fromarray(pixels))


def median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def style_medians(data: bytes, style: str, preset: str, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = render(data, style, preset)
        runs.append({**result.metadata["timings_ms"], "total": (time.perf_counter() - start) * 1000})
    return {key: statistics.median(run[key] for run in runs) for key in (*STAGES, "total")}


def peak_rss_mib(data: bytes, style: str, preset: str, path: str = "engine") -> tuple[float, float]:
    """(RSS after imports, peak RSS) of a fresh process rendering ``data`` once, in MiB."""
    with tempfile.NamedTemporaryFile(suffix=".jpg") as source:
        source.write(data)
        source.flush()
        out = subprocess.run([sys.executable, "-c", RSS_CHILD, source.name, style, preset, path],
                             capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    before, peak = (int(v) / 1024 for v in out.stdout.split())
    return before, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 12 MP only, naive once")
    parser.add_argument("--preset", default="iphone-6.7")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    repeats, naive_repeats = (3, 1) if args.quick else (7, 3)
    sizes = {"12 MP": SIZES["12 MP"]} if args.quick else SIZES
    preset = args.preset
    report: dict[str, object] = {"preset": preset, "repeats": repeats, "sizes": {}}

    print(f"preset {preset}; medians of {repeats} runs (naive: {naive_repeats}); times in ms\n")
    print("| source | style | decode | preprocess | quantize | compose | encode + preview | **total** "
          "| naive | iters | floor | io | naive/total | total/floor | total/io |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    sources = [(f"generated {label}", lambda size=size: photo_jpeg(*size)) for label, size in sizes.items()]
    if SAMPLES.is_dir():
        sources += [(f"{path.stem} 12 MP", lambda path=path: sample_jpeg(path, *SIZES["12 MP"]))
                    for path in sorted(SAMPLES.glob("*.[jp][pn]g"))]
    for label, make in sources:
        data = make()
        for style in STYLES:  # warm-up: a process's first renders pay for fresh memory pages
            render(data, style, preset)
        floor_ms = median_ms(lambda: floor(data, preset, encode=True), repeats)
        io_ms = median_ms(lambda: floor(data, preset, encode=False), repeats)
        rows = {}
        for style in STYLES:
            stats = style_medians(data, style, preset, repeats)
            counts: list[int] = []
            naive_ms = median_ms(lambda: counts.append(naive(data, style, preset)[1]), naive_repeats)
            iterations = statistics.median_low(counts)
            rows[style] = {**stats, "naive": naive_ms, "naive_iterations": iterations, "floor": floor_ms, "io": io_ms}
            cells = " | ".join(f"{stats[s]:.0f}" for s in STAGES)
            print(f"| {label} | {style} | {cells} | **{stats['total']:.0f}** | {naive_ms:.0f} | {iterations} "
                  f"| {floor_ms:.0f} | {io_ms:.0f} | {naive_ms / stats['total']:.1f}x "
                  f"| {stats['total'] / floor_ms:.2f} | {stats['total'] / io_ms:.2f} |", flush=True)
        report["sizes"][label] = rows  # type: ignore[index]

    data = photo_jpeg(*SIZES["24 MP"])
    print("\npeak RSS of one 24 MP render in a fresh process (MiB; after imports -> peak):")
    for style in STYLES:
        before, peak = peak_rss_mib(data, style, preset)
        print(f"  {style:12s} {before:6.0f} -> {peak:6.0f}")
        report.setdefault("rss_mib", {})[style] = peak  # type: ignore[union-attr,index]
    if not args.quick:
        before, peak = peak_rss_mib(data, "pop-poster", preset, "naive")
        print(f"  {'naive':12s} {before:6.0f} -> {peak:6.0f}")
        report["naive_rss_mib"] = peak
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
