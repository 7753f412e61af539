"""`render-pipeline requeue` as an operator runs it, against a real database."""

from __future__ import annotations

import pytest

from render_pipeline_tests.commands.conftest import cli_process
from render_pipeline_tests.maintenance.scenario import snapshot


def _by_status(database):
    with database.connection() as conn:
        return {r["id"]: r for r in conn.execute("SELECT id, status, attempt, metadata, dagster_run_id FROM renders")}


def test_requeue_by_error_pattern_and_time_window(database, database_url, failed_renders):
    env = {"DATABASE_URL": database_url}
    result = cli_process("requeue", "--error-like", "%timed out%", "--since", "3d", "--reason", "S3 outage fixed", env=env)
    assert result.returncode == 0, result.stderr
    assert "requeued 3 render(s)" in result.stdout
    rows = _by_status(database)
    requeued = {rid for rid, r in rows.items() if r["status"] == "queued"}
    assert requeued == {failed_renders[0], failed_renders[1], failed_renders[2]}
    for rid in requeued:
        assert rows[rid]["attempt"] == 1 and rows[rid]["dagster_run_id"] is None  # it grows when a run starts it
        assert rows[rid]["metadata"]["requeues"] == 1
        assert rows[rid]["metadata"]["requeue_reason"] == "S3 outage fixed" and "requeued_at" in rows[rid]["metadata"]
        assert str(rid) in result.stdout


def test_requeue_by_regex_and_style_skips_archived_unless_asked(database, app_cli, failed_renders):
    result = app_cli("requeue", "--error-regex", "^upload: .*timed")
    assert "requeued 5 render(s)" in result.stdout  # the archived-flagged one is left alone
    with_archived = app_cli("requeue", "--error-regex", "timed", "--include-archived")
    assert "requeued 1 render(s)" in with_archived.stdout
    styled = app_cli("requeue", "--all-failed", "--style", "duotone")
    assert "requeued 2 render(s)" in styled.stdout  # decode failures 7 and 11; timeout 3 is queued already
    rows = _by_status(database)
    assert rows[failed_renders[7]]["status"] == rows[failed_renders[11]]["status"] == "queued"


def test_requeue_one_render_by_id_and_dry_run(database, app_cli, failed_renders):
    before = snapshot(database)
    dry = app_cli("requeue", "--all-failed", "--dry-run")
    assert "dry run: 11 failed render(s) would be requeued" in dry.stdout
    assert snapshot(database) == before
    one = app_cli("requeue", "--id", str(failed_renders[8]))
    assert "requeued 1 render(s)" in one.stdout
    assert _by_status(database)[failed_renders[8]]["status"] == "queued"
    again = app_cli("requeue", "--id", str(failed_renders[8]))  # no longer failed: nothing to do
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
def test_bad_selection_is_rejected_clearly(database, app_cli, failed_renders, args, message):
    before = snapshot(database)
    result = app_cli("requeue", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert snapshot(database) == before
