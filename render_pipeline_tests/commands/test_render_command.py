"""`render-pipeline render`: files written, metadata printed, refusals exit 2 with one line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from render_pipeline.commands import render as render_command
from render_pipeline.imaging import PRESETS, STYLES
from render_pipeline_tests.imaging.inputs import jpeg

REPO = Path(__file__).resolve().parents[2]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    render_command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "photo.jpg"
    path.write_bytes(jpeg(900, 700, seed=11))
    return path


@pytest.mark.parametrize("style", list(STYLES))
def test_renders_every_style_and_preset(style: str, photo_file: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    for preset in PRESETS.values():
        out = tmp_path / preset.id
        args = _parse(["render", str(photo_file), "--style", style, "--preset", preset.id, "--out", str(out)])
        assert args.func(args) == 0
        metadata = json.loads(capsys.readouterr().out)
        assert (metadata["style"], metadata["preset"]) == (style, preset.id)
        assert Image.open(out / "output.png").size == (preset.width, preset.height)
        assert max(Image.open(out / "preview.jpg").size) == 512


def test_config_override(photo_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["render", str(photo_file), "--style", "warhol-grid", "--preset", "square-1024",
                   "--config", '{"rows": 3, "cols": 3}', "--out", str(tmp_path)])
    assert render_command.run(args) == 0
    assert json.loads(capsys.readouterr().out)["config"]["rows"] == 3


@pytest.mark.parametrize(
    ("content", "extra", "expected"),
    [
        (b"", [], "error: empty: the file is empty"),
        (b"<html><body>hi</body></html>", [], "error: unsupported_format: the file is an HTML page, not an image"),
        (None, ["--style", "sepia"], "error: unknown_style: 'sepia' is not one of"),
        (None, ["--preset", "iphone-3g"], "error: unknown_preset: 'iphone-3g' is not one of"),
        (None, ["--config", "{k: 3}"], "error: invalid_config: --config is not valid JSON"),
        (None, ["--config", '{"k": 99}'], "error: invalid_config: style 'pop-poster': config key 'k'"),
    ],
)
def test_refusals_exit_2_with_one_line(content: bytes | None, extra: list[str], expected: str, photo_file: Path,
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = photo_file
    if content is not None:
        source = tmp_path / "upload.jpg"
        source.write_bytes(content)
    args = _parse(["render", str(source), "--style", "pop-poster", "--preset", "square-1024",
                   "--out", str(tmp_path / "out"), *extra])
    assert args.func(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(expected) and captured.err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_through_the_cli_entry_point(photo_file: Path, tmp_path: Path) -> None:
    code = "import sys; from render_pipeline.cli import main; sys.exit(main())"
    ok = subprocess.run([sys.executable, "-c", code, "render", str(photo_file), "--style", "halftone",
                         "--preset", "play-feature", "--out", str(tmp_path)],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["width"] == 1024
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(jpeg(400, 300)[:3000])
    refused = subprocess.run([sys.executable, "-c", code, "render", str(bad), "--style", "halftone",
                              "--preset", "play-feature", "--out", str(tmp_path / "x")],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: truncated: the JPEG data ends early")
