"""`render-pipeline lifecycle` against a real S3 endpoint (moto server)."""

from __future__ import annotations

import pytest

from render_pipeline.commands.lifecycle import RULE_ID, lifecycle_rules
from render_pipeline_tests.conftest import s3_settings


@pytest.fixture
def s3_home(s3_endpoint, s3_bucket, tmp_path) -> dict[str, str]:
    return {"RENDER_PIPELINE_HOME": str(tmp_path), **s3_settings(s3_endpoint, s3_bucket)}


def test_apply_then_show_keeps_other_rules(cli, s3_home, s3_store):
    assert "0 lifecycle rule(s)" in cli("lifecycle", "show", env=s3_home).stdout
    s3_store.client.put_bucket_lifecycle_configuration(Bucket=s3_store.bucket, LifecycleConfiguration={"Rules": [
        {"ID": "tmp-cleanup", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}}]})

    applied = cli("lifecycle", "apply", "--days", "120", env=s3_home)
    assert applied.returncode == 0, applied.stderr
    again = cli("lifecycle", "apply", "--days", "180", env=s3_home)  # replaces our rule, not adds another
    assert again.returncode == 0
    rules = {rule["ID"]: rule for rule in lifecycle_rules(s3_store)}
    assert set(rules) == {"tmp-cleanup", RULE_ID}
    assert rules[RULE_ID]["Expiration"] == {"Days": 180}
    assert rules[RULE_ID]["Filter"] == {"Prefix": "renders/"}
    shown = cli("lifecycle", "show", env=s3_home).stdout
    assert f"{RULE_ID}: Enabled prefix='renders/' expire after 180 days" in shown


def test_short_expiry_warns_and_bad_input_is_rejected(cli, s3_home, tmp_path):
    short = cli("lifecycle", "apply", "--days", "30", env=s3_home)
    assert short.returncode == 0 and "not above the retention job's 90 days" in short.stderr
    assert cli("lifecycle", "apply", "--days", "0", env=s3_home).returncode == 2
    local = cli("lifecycle", "show", env={"RENDER_PIPELINE_HOME": str(tmp_path)})
    assert local.returncode == 2 and "need an S3/MinIO store" in local.stderr
