"""Scenario 7: hostile keys and objects — `..`, absolute-looking, unicode, spaces, control
characters, 1 000-byte keys, zero-byte and fake images, objects that vanish or change while
their run is in flight — are recorded safely (registered or invalid with a reason), never
escape the bucket prefix or the local store root, and never crash a sensor tick."""

from __future__ import annotations

import hashlib
import os
from collections import Counter

import pytest

from render_pipeline.keys import RENDERS_PREFIX, asset_id_for, render_id_for, render_object_keys, storable_key
from render_pipeline_tests.orchestration_helpers import definitions_for, jpeg_bytes, png_bytes
from render_pipeline_tests.reliability.harness import Pipeline, audit, list_keys, requeue

pytestmark = pytest.mark.reliability

STYLES = ("duotone",)
PRESETS = ("play-feature",)
IMAGE = jpeg_bytes(64, 48, seed=21)

# key → expected status ("valid" renders; "invalid" with a reason)
HOSTILE_S3_KEYS = {
    "uploads/../escape.jpg": "invalid",
    "uploads/a/../../etc/passwd": "invalid",
    "uploads/./dot/x.jpg": "invalid",
    "uploads//etc/passwd": "invalid",  # absolute-looking after the prefix
    "uploads/win/C:\\Windows\\x.jpg": "invalid",
    "uploads/no-folder.jpg": "invalid",
    "uploads/nested/deeper/x.jpg": "invalid",
    "uploads/dots/a...b.jpg": "invalid",  # Dagster reserves '...' for ranges
    "uploads/ctl/bell\x07.jpg": "invalid",
    "uploads/ctl/tab\there.jpg": "invalid",
    "uploads/ctl/del\x7f.jpg": "invalid",
    "uploads/ trailing /x.jpg": "invalid",
    "uploads/long/" + "x" * 987: "invalid",  # 1 000 bytes, over the partition-key limit
    "uploads/long-utf8/" + "é" * 491: "valid",  # 1 000 bytes, 509 characters
    "uploads/ünïcødé/фото 🎨.jpg": "valid",
    "uploads/caf\u00e9/nfc.jpg": "valid",  # NFC and NFD spellings are different keys
    "uploads/cafe\u0301/nfd.jpg": "valid",
    "uploads/with space/a b.jpg": "valid",
    "uploads/quote'\"<b>|`/x.jpg": "valid",
    "uploads/pct/%2e%2e%2fx.jpg": "valid",  # literal percent signs, not an escape
    "uploads/c1/a\u0085b\u2028c.jpg": "valid",  # C1 control and line separator inside a name
    "uploads/c1/\u0085lead.jpg": "invalid",  # U+0085 is whitespace: a leading one is rejected
}


def _assets(database) -> dict[str, dict]:
    with database.connection() as conn:
        return {row["object_key"]: row for row in conn.execute("SELECT * FROM assets").fetchall()}


def test_hostile_keys_and_objects_on_s3(s3_env, boto, s3_bucket, database, instance):
    defs = definitions_for(s3_env, presets=PRESETS)
    for key in HOSTILE_S3_KEYS:
        boto.put_object(Bucket=s3_bucket, Key=key, Body=IMAGE)
    # Bad objects under good keys.
    boto.put_object(Bucket=s3_bucket, Key="uploads/empty/zero.jpg", Body=b"")
    boto.put_object(Bucket=s3_bucket, Key="uploads/fake/not-an-image.png", Body=b"<?php echo 'hi'; ?>")
    boto.put_object(Bucket=s3_bucket, Key="uploads/trunc/half.png", Body=png_bytes(64, 48)[:200])
    before = list_keys(boto, s3_bucket, "")

    pipeline = Pipeline(defs, instance)
    outcomes = pipeline.drain()  # a tick that raised would fail the test here
    assert outcomes and all(o.success for o in outcomes)

    assets = _assets(database)
    for key, expected in HOSTILE_S3_KEYS.items():
        row = assets.get(storable_key(key))
        assert row is not None, f"{key!r} was not recorded"
        assert row["status"] == expected, (key, row["status"], row["error_message"])
        if expected == "invalid":
            assert row["error_message"], key
    for key, code in (("uploads/empty/zero.jpg", "empty"), ("uploads/fake/not-an-image.png", None),
                      ("uploads/trunc/half.png", None)):
        assert assets[key]["status"] == "invalid" and assets[key]["error_message"], key
        if code:
            assert assets[key]["error_code"] == code

    after = list_keys(boto, s3_bucket, "")
    # Uploads untouched; everything written is a render's own deterministic key.
    assert {k: v for k, v in after.items() if not k.startswith(RENDERS_PREFIX)} == before
    result = audit(database, after, styles=STYLES, presets=PRESETS)
    assert not result.problems, result.problems
    valid = sum(1 for v in HOSTILE_S3_KEYS.values() if v == "valid")
    assert result.renders == {"completed": valid} and result.render_objects == 2 * valid

    # A second full cycle changes nothing and raises nothing.
    assert pipeline.drain() == []


def test_objects_vanishing_or_changing_mid_run(s3_env, proxy, boto, s3_bucket, database, instance):
    """A run renders exactly the bytes it validated (read once); a run that has to read the
    object again (a requeue) renders only if it is still that version."""
    defs = definitions_for(s3_env, presets=PRESETS)
    pipeline = Pipeline(defs, instance)
    boto.put_object(Bucket=s3_bucket, Key="uploads/gone-early/p.jpg", Body=IMAGE)
    boto.put_object(Bucket=s3_bucket, Key="uploads/gone-late/p.jpg", Body=IMAGE)
    boto.put_object(Bucket=s3_bucket, Key="uploads/changed/p.jpg", Body=IMAGE)
    new_bytes = jpeg_bytes(80, 60, seed=22)

    def first_render_put(key: str) -> str:
        return render_object_keys(render_id_for(asset_id_for(key), STYLES[0], PRESETS[0]))[0]

    # After validation, as each render is written: one object is deleted, one overwritten.
    proxy.add(action="pass", ops=("put",), key_prefix=first_render_put("uploads/gone-late/p.jpg"), nth=1,
              before=lambda _r: boto.delete_object(Bucket=s3_bucket, Key="uploads/gone-late/p.jpg"))
    proxy.add(action="pass", ops=("put",), key_prefix=first_render_put("uploads/changed/p.jpg"), nth=1,
              before=lambda _r: boto.put_object(Bucket=s3_bucket, Key="uploads/changed/p.jpg", Body=new_bytes))
    requests = pipeline.tick()
    # Between listing and the run: deleted.
    boto.delete_object(Bucket=s3_bucket, Key="uploads/gone-early/p.jpg")
    assert all(o.success for o in pipeline.launch(requests))
    reads = Counter(entry.request.key for entry in proxy.requests(op="get", key_prefix="uploads/"))
    assert set(reads.values()) == {1}, reads  # each upload fetched once, for every style

    assets = _assets(database)
    assert assets["uploads/gone-early/p.jpg"]["status"] == "invalid"
    assert assets["uploads/gone-early/p.jpg"]["error_code"] == "missing"
    late = _render_row(database, "uploads/gone-late/p.jpg")
    assert late["status"] == "completed"  # the validated bytes, though the object went
    first = _render_row(database, "uploads/changed/p.jpg")
    assert first["status"] == "completed" and first["render_metadata"]["source"]["width"] == 64

    # The next cycle sees the new version of `changed` and renders exactly it.
    outcomes = pipeline.drain()
    assert len(outcomes) == 1 and outcomes[0].success
    assets = _assets(database)
    assert assets["uploads/changed/p.jpg"]["sha256"] == hashlib.sha256(new_bytes).hexdigest()
    row = _render_row(database, "uploads/changed/p.jpg")
    assert row["status"] == "completed"
    assert (row["render_metadata"]["source"]["width"], row["render_metadata"]["source"]["height"]) == (80, 60)

    # A requeue reads the objects again: the deleted one is refused with its reason, and one
    # overwritten since its validation is not rendered from the wrong bytes.
    boto.put_object(Bucket=s3_bucket, Key="uploads/changed/p.jpg", Body=IMAGE)
    assert requeue(database, "status = 'completed'") == 2
    assert all(o.success for o in pipeline.launch(pipeline.requeue_tick()))
    late = _render_row(database, "uploads/gone-late/p.jpg")
    assert late["status"] == "failed" and "decode: the upload object no longer exists" in late["error_message"]
    changed = _render_row(database, "uploads/changed/p.jpg")
    assert changed["status"] == "failed" and "changed after it was validated" in changed["error_message"]
    pipeline.drain()  # the sensor validates and renders the version now in the bucket
    result = audit(database, list_keys(boto, s3_bucket, ""), styles=STYLES, presets=PRESETS)
    # gone-late's earlier render objects outlive its failed row: orphan reconciliation's case.
    assert result.orphans == sorted(render_object_keys(late["id"])) and result.problems.keys() == {"orphans"}
    assert _render_row(database, "uploads/changed/p.jpg")["status"] == "completed"


def _render_row(database, object_key: str) -> dict:
    with database.connection() as conn:
        return conn.execute("SELECT * FROM renders WHERE asset_id = %s", (asset_id_for(object_key),)).fetchone()


def test_hostile_files_in_the_local_store_never_escape_its_root(database, database_url, tmp_path, instance,
                                                                 monkeypatch):
    root = tmp_path / "objects"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(IMAGE)
    env = {"DATABASE_URL": database_url, "LOCAL_STORE_ROOT": str(root), "RENDER_DEFAULT_STYLES": "duotone"}
    monkeypatch.setenv("DATABASE_URL", database_url)
    defs = definitions_for(env, presets=PRESETS)

    uploads = root / "uploads"
    files = {
        b"ok/plain.jpg": "valid",
        "ünï/фото 🎨.jpg".encode(): "valid",
        b"sp ace/a b.jpg": "valid",
        b"bad/\xff\xfe.jpg": "invalid",  # not UTF-8
        b"bad/back\\slash.jpg": "invalid",
        b"bad/ctl\x01.jpg": "invalid",
        b"bad/new\nline.jpg": "invalid",
        b"empty/zero.jpg": "invalid",
    }
    for name, _ in files.items():
        path = os.path.join(os.fsencode(uploads), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"" if name.startswith(b"empty/") else IMAGE)
    # Symlinks pointing outside the root: a file link and a directory link.
    (uploads / "link").mkdir()
    (uploads / "link" / "escape.jpg").symlink_to(outside / "secret.jpg")
    (uploads / "dirlink").symlink_to(outside, target_is_directory=True)

    pipeline = Pipeline(defs, instance)
    outcomes = pipeline.drain()
    assert all(o.success for o in outcomes), [o.run_id for o in outcomes if not o.success]

    assets = _assets(database)
    for name, expected in files.items():
        key = "uploads/" + storable_key(os.fsdecode(name))
        assert key in assets, f"{key!r} not recorded: {sorted(assets)}"
        assert assets[key]["status"] == expected, (key, assets[key]["error_message"])
        if expected == "invalid":
            assert assets[key]["error_message"]
    link = assets.get("uploads/link/escape.jpg")
    assert link is not None and link["status"] == "invalid" and link["error_message"], link
    assert not any(k.startswith("uploads/dirlink/") for k in assets)  # directory links are not followed

    # Nothing was written outside the root, and the outside file is untouched.
    assert sorted(p.name for p in outside.iterdir()) == ["secret.jpg"]
    written = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
               and p.relative_to(root).parts[0] not in ("uploads",)]
    assert all(p.relative_to(root).parts[0] == "renders" for p in written), written
    with database.connection() as conn:
        rows = conn.execute("SELECT id, status FROM renders").fetchall()
    assert {r["status"] for r in rows} == {"completed"} and len(rows) == 3
    expected_keys = {k for r in rows for k in render_object_keys(r["id"])}
    assert {str(p.relative_to(root)) for p in written} == expected_keys
