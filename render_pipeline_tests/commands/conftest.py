"""The operators' entry point, run in this process: `render_pipeline.cli.main` with exactly the
environment a test gives it (a subprocess costs seconds of imports; each command module keeps
one test through a real process)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import partial

import pytest

from render_pipeline.cli import main
from render_pipeline_tests.maintenance.scenario import STYLES, insert_asset, insert_render
from render_pipeline_tests.processes import SETTING_PREFIXES, clean_environ

Cli = Callable[..., subprocess.CompletedProcess]


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


@pytest.fixture
def app_cli(cli: Cli, database_url: str) -> Callable[..., subprocess.CompletedProcess]:
    """``app_cli(*args)``: the in-process entry point with the test database as its only setting."""
    return partial(cli, env={"DATABASE_URL": database_url})


@pytest.fixture
def failed_renders(database):
    """12 failed renders: 6 timeouts (3 yesterday, 3 ten days ago), 6 decode errors; one
    timeout flagged archived by retention; plus a completed render."""
    with database.transaction() as conn:
        asset_ids = [insert_asset(conn, f"uploads/rq-{i}/a.png") for i in range(4)]
        rows = {}
        for i in range(12):
            error = "upload: S3 put timed out" if i < 6 else "decode: cannot identify image file"
            age = timedelta(days=10) if i in (3, 4, 5) else timedelta(days=1)
            rows[i] = insert_render(conn, asset_ids[i // 4], STYLES[i % 4], "failed", age=age, error=error)
        conn.execute("UPDATE renders SET metadata = '{\"archived\": true}' WHERE id = %s", (rows[5],))
        rows["done"] = insert_render(conn, asset_ids[3], "pop-poster", "completed", age=timedelta(days=1))
    return rows
