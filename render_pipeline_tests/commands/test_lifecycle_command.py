"""`render-pipeline lifecycle` against a real S3 endpoint (moto server)."""

from __future__ import annotations

import os
import subprocess

import pytest

from render_pipeline.cli import main
from render_pipeline.commands.lifecycle import RULE_ID, lifecycle_rules
from render_pipeline_tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY


@pytest.fixture
def cli(s3_endpoint, s3_bucket, monkeypatch, capsys, tmp_path):
    for name in list(os.environ):
        if name.startswith(("DB_", "MINIO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RENDER_PIPELINE_HOME", str(tmp_path))
    env = {"MINIO_ENDPOINT": s3_endpoint, "MINIO_ACCESS_KEY": S3_ACCESS_KEY, "MINIO_SECRET_KEY": S3_SECRET_KEY,
           "MINIO_BUCKET": s3_bucket}

    def invoke(*args: str, s3: bool = True) -> subprocess.CompletedProcess:
        with monkeypatch.context() as m:
            for name, value in env.items() if s3 else ():
                m.setenv(name, value)
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = exc.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return invoke


def test_apply_then_show_keeps_other_rules(cli, s3_store):
    assert "0 lifecycle rule(s)" in cli("lifecycle", "show").stdout
    s3_store.client.put_bucket_lifecycle_configuration(Bucket=s3_store.bucket, LifecycleConfiguration={"Rules": [
        {"ID": "tmp-cleanup", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}}]})

    applied = cli("lifecycle", "apply", "--days", "120")
    assert applied.returncode == 0, applied.stderr
    again = cli("lifecycle", "apply", "--days", "180")  # replaces our rule, not adds another
    assert again.returncode == 0
    rules = {rule["ID"]: rule for rule in lifecycle_rules(s3_store)}
    assert set(rules) == {"tmp-cleanup", RULE_ID}
    assert rules[RULE_ID]["Expiration"] == {"Days": 180}
    assert rules[RULE_ID]["Filter"] == {"Prefix": "renders/"}
    shown = cli("lifecycle", "show").stdout
    assert f"{RULE_ID}: Enabled prefix='renders/' expire after 180 days" in shown


def test_short_expiry_warns_and_bad_input_is_rejected(cli):
    short = cli("lifecycle", "apply", "--days", "30")
    assert short.returncode == 0 and "not above the retention job's 90 days" in short.stderr
    assert cli("lifecycle", "apply", "--days", "0").returncode == 2
    local = cli("lifecycle", "show", s3=False)
    assert local.returncode == 2 and "need an S3/MinIO store" in local.stderr
