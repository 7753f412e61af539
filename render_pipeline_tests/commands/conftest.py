"""The operators' entry point, run in this process: `render_pipeline.cli.main` with exactly the
environment a test gives it (a subprocess costs seconds of imports; each command module keeps
one test through a real process)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping

import pytest

from render_pipeline.cli import main

# The project's settings: a command sees only what the test passes, never the caller's shell.
SETTING_PREFIXES = ("DATABASE_URL", "DB_", "DAGSTER_", "MINIO_", "LOCAL_STORE_ROOT", "RENDER_", "PG_BIN_DIR")

Cli = Callable[..., subprocess.CompletedProcess]


def clean_environ() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith(SETTING_PREFIXES)}


def cli_process(*args: str, env: Mapping[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """A real `render-pipeline` process with ``env`` as its only settings."""
    return subprocess.run([sys.executable, "-m", "render_pipeline.cli", *args], env={**clean_environ(), **env},
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``cli(*args, env={...})``: `main(args)` in this process, its exit code and output."""

    def invoke(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess:
        with monkeypatch.context() as patch:
            for name in os.environ:
                if name.startswith(SETTING_PREFIXES):
                    patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse refuses bad values this way
                code = exc.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return invoke
