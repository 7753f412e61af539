"""`render-pipeline failures`: failed renders counted per message, as the runbook groups them."""

from __future__ import annotations


def test_failures_counts_per_message_most_frequent_first(database, app_cli, failed_renders):
    recent = app_cli("failures", "--since", "3d")
    assert recent.returncode == 0, recent.stderr
    lines = recent.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[0] == "6" and lines[0].endswith("decode: cannot identify image file")
    assert lines[1].split()[0] == "3" and lines[1].endswith("upload: S3 put timed out")
    everything = app_cli("failures", "--since", "30d", "--style", "pop-poster", "--include-archived")
    counts = {line.rsplit("  ", 1)[-1]: int(line.split()[0]) for line in everything.stdout.splitlines()}
    assert counts == {"upload: S3 put timed out": 2, "decode: cannot identify image file": 1}
    assert "no failed renders since" in app_cli("failures", "--since", "1h").stdout
    bad = app_cli("failures", "--limit", "0")
    assert bad.returncode == 2 and "--limit must be between 1 and 1000" in bad.stderr
