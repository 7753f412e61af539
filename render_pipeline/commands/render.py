"""`render-pipeline render FILE --style S --preset P [--config JSON] --out DIR`.

The runbook's "reproduce locally": renders one file exactly as the pipeline would, writes
``output.png`` and ``preview.jpg`` and prints the render metadata as JSON.  A refused
input, unknown style/preset or bad config exits 2 with one ``error: <code>: <reason>`` line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from render_pipeline.imaging import PRESETS, STYLES, ImageRejected, render

EXIT_REFUSED = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("render", help="render one image file locally", description=__doc__)
    parser.add_argument("file", type=Path, help="source image")
    parser.add_argument("--style", required=True, help=f"one of: {', '.join(STYLES)}")
    parser.add_argument("--preset", required=True, help=f"one of: {', '.join(PRESETS)}")
    parser.add_argument("--config", default=None, help="JSON object overriding the style's defaults")
    parser.add_argument("--out", type=Path, required=True, help="directory for output.png and preview.jpg")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = json.loads(args.config) if args.config else None
    except json.JSONDecodeError as exc:
        return _refuse("invalid_config", f"--config is not valid JSON ({exc})")
    if args.style not in STYLES:
        return _refuse("unknown_style", f"{args.style!r} is not one of {', '.join(STYLES)}")
    if args.preset not in PRESETS:
        return _refuse("unknown_preset", f"{args.preset!r} is not one of {', '.join(PRESETS)}")
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        return _refuse("unreadable", f"cannot read {args.file} ({exc.strerror})")
    try:
        result = render(data, args.style, args.preset, config)
    except ImageRejected as exc:
        return _refuse(exc.code, exc.reason)
    except ValueError as exc:
        return _refuse("invalid_config", str(exc))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "output.png").write_bytes(result.output_png)
    (args.out / "preview.jpg").write_bytes(result.preview_jpeg)
    print(json.dumps(result.metadata, indent=2))
    return 0


def _refuse(code: str, reason: str) -> int:
    print(f"error: {code}: {reason}", file=sys.stderr)
    return EXIT_REFUSED
