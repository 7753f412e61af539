"""`render-pipeline requeue` as an operator runs it, against a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from render_pipeline.cli import main

from render_pipeline_tests.maintenance.scenario import STYLES, insert_asset, insert_render, snapshot


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A real `render-pipeline` process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "MINIO_", "DATABASE_URL"))}
    return subprocess.run([sys.executable, "-m", "render_pipeline.cli", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli(database_url, monkeypatch, capsys):
    """The same entry point in this process (a subprocess costs seconds of imports)."""
    for name in list(os.environ):
        if name.startswith(("DB_", "MINIO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", database_url)

    def invoke(*args: str) -> subprocess.CompletedProcess:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse rejects bad values this way
            code = exc.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return invoke


@pytest.fixture
def failures(database):
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


def _by_status(database):
    with database.connection() as conn:
        return {r["id"]: r for r in conn.execute("SELECT id, status, attempt, metadata, dagster_run_id FROM renders")}


def test_requeue_by_error_pattern_and_time_window(database, database_url, failures):
    env = {"DATABASE_URL": database_url}
    result = _cli("requeue", "--error-like", "%timed out%", "--since", "3d", "--reason", "S3 outage fixed", env=env)
    assert result.returncode == 0, result.stderr
    assert "requeued 3 render(s)" in result.stdout
    rows = _by_status(database)
    requeued = {rid for rid, r in rows.items() if r["status"] == "queued"}
    assert requeued == {failures[0], failures[1], failures[2]}
    for rid in requeued:
        assert rows[rid]["attempt"] == 1 and rows[rid]["dagster_run_id"] is None  # it grows when a run starts it
        assert rows[rid]["metadata"]["requeues"] == 1
        assert rows[rid]["metadata"]["requeue_reason"] == "S3 outage fixed" and "requeued_at" in rows[rid]["metadata"]
        assert str(rid) in result.stdout


def test_requeue_by_regex_and_style_skips_archived_unless_asked(database, cli, failures):
    result = cli("requeue", "--error-regex", "^upload: .*timed")
    assert "requeued 5 render(s)" in result.stdout  # the archived-flagged one is left alone
    with_archived = cli("requeue", "--error-regex", "timed", "--include-archived")
    assert "requeued 1 render(s)" in with_archived.stdout
    styled = cli("requeue", "--all-failed", "--style", "duotone")
    assert "requeued 2 render(s)" in styled.stdout  # decode failures 7 and 11; timeout 3 is queued already
    rows = _by_status(database)
    assert rows[failures[7]]["status"] == rows[failures[11]]["status"] == "queued"


def test_requeue_one_render_by_id_and_dry_run(database, cli, failures):
    before = snapshot(database)
    dry = cli("requeue", "--all-failed", "--dry-run")
    assert "dry run: 11 failed render(s) would be requeued" in dry.stdout
    assert snapshot(database) == before
    one = cli("requeue", "--id", str(failures[8]))
    assert "requeued 1 render(s)" in one.stdout
    assert _by_status(database)[failures[8]]["status"] == "queued"
    again = cli("requeue", "--id", str(failures[8]))  # no longer failed: nothing to do
    assert "requeued 0 render(s)" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "choose renders with"),
        (("--style", "sepia"), "unknown style(s) sepia"),
        (("--error-regex", "(unclosed"), "--error-regex:"),
        (("--all-failed", "--limit", "0"), "--limit must be between 1 and 100000"),
        (("--since", "yesterday-ish"), "neither an ISO time"),
        (("--id", "not-a-uuid"), "is not a render id"),
    ],
)
def test_bad_selection_is_rejected_clearly(database, cli, failures, args, message):
    before = snapshot(database)
    result = cli("requeue", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert snapshot(database) == before


def test_failures_counts_per_message_most_frequent_first(database, cli, failures):
    recent = cli("failures", "--since", "3d")
    assert recent.returncode == 0, recent.stderr
    lines = recent.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[0] == "6" and lines[0].endswith("decode: cannot identify image file")
    assert lines[1].split()[0] == "3" and lines[1].endswith("upload: S3 put timed out")
    everything = cli("failures", "--since", "30d", "--style", "pop-poster", "--include-archived")
    counts = {line.rsplit("  ", 1)[-1]: int(line.split()[0]) for line in everything.stdout.splitlines()}
    assert counts == {"upload: S3 put timed out": 2, "decode: cannot identify image file": 1}
    assert "no failed renders since" in cli("failures", "--since", "1h").stdout
    bad = cli("failures", "--limit", "0")
    assert bad.returncode == 2 and "--limit must be between 1 and 1000" in bad.stderr
