"""Object keys from users are untrusted: each becomes a partition or a clear reason."""

from __future__ import annotations

import pytest

from render_pipeline.keys import (
    InvalidUploadKey,
    asset_id_for,
    object_key_for,
    partition_key_for,
    render_id_for,
    render_object_keys,
)


@pytest.mark.parametrize(
    "key",
    ["uploads/abc/photo.jpg", "uploads/Kampagne Ü/bild 1.png", "uploads/2026-11-22/IMG_0001.HEIC.jpg",
     "uploads/a/b.c.d"],
)
def test_good_keys_round_trip(key):
    assert object_key_for(partition_key_for(key)) == key


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("uploads/photo.jpg", "no {asset_id}/ folder"),
        ("uploads/a/../b.jpg", "'..'"),
        ("uploads//b.jpg", "empty"),
        ("uploads/a/b/c.jpg", "nested deeper"),
        ("uploads/a/b\n.jpg", "control characters"),
        ("uploads/a/b\x00.jpg", "control characters"),
        ("uploads/a/x...y.jpg", "'...'"),
        ("uploads/a/ b.jpg", "whitespace"),
        ("uploads/a\\b/c.jpg", "backslash"),
        ("uploads/a/" + "x" * 600, "longer than"),
        ("uploads/a/\udcff.jpg", "UTF-8"),
        ("elsewhere/a/b.jpg", "not under uploads/"),
    ],
)
def test_bad_keys_are_refused_with_a_reason(key, reason):
    with pytest.raises(InvalidUploadKey, match=None) as excinfo:
        partition_key_for(key)
    assert reason in str(excinfo.value)


def test_ids_and_object_keys_are_deterministic():
    asset_id = asset_id_for("uploads/a/b.jpg")
    assert asset_id == asset_id_for("uploads/a/b.jpg") != asset_id_for("uploads/a/c.jpg")
    render_id = render_id_for(asset_id, "pop-poster", "square-1024")
    assert render_id == render_id_for(asset_id, "pop-poster", "square-1024")
    assert render_id != render_id_for(asset_id, "pop-poster", "play-phone")
    assert render_object_keys(render_id) == (f"renders/{render_id}/output.png", f"renders/{render_id}/preview.jpg")
