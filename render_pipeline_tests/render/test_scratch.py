"""The run scratch directory: items round-trip exactly, sources and decodes are shared, and
the directory is gone when the run's resources are torn down."""

from __future__ import annotations

import os
import time
import uuid

import numpy as np
from dagster import build_resources

from render_pipeline.render.scratch import (
    ABANDONED_AFTER_SECONDS,
    SCRATCH_PREFIX,
    WRITE_PIECE,
    RenderScratch,
    remove_abandoned,
)


def test_spilled_items_round_trip_and_the_directory_goes_with_the_run() -> None:
    pixels = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    with build_resources({"scratch": RenderScratch()}) as resources:
        scratch: RenderScratch = resources.scratch
        root = scratch.root
        spilled = scratch.spill(pixels)
        assert spilled.load().dtype == np.uint8 and np.array_equal(spilled.load(), pixels)
        blob = scratch.spill_bytes(b"\x89PNG...")
        assert blob.load() == b"\x89PNG..." and blob.size == 7
        spilled.discard()
        assert not spilled.path.exists()

        upload = uuid.uuid4()
        assert scratch.source(upload) is None
        scratch.keep_source(upload, b"validated bytes")
        assert scratch.source(upload) == b"validated bytes"

        key = (upload, "sha", False, 2)
        assert scratch.decoded(key) is None
        kept = scratch.keep_decoded(key, pixels)
        assert scratch.decoded(key) == kept and np.array_equal(kept.load(), pixels)
        # Names are ours, never the user's keys.
        assert all(path.name.startswith(("0", "source-")) for path in root.iterdir())
    assert not root.exists()


def test_items_larger_than_a_write_piece_round_trip_as_standard_npy_files() -> None:
    """Spills are written piece by piece; what lands is still one exact, standard .npy file,
    also for a strided view (a transpose, a crop) rather than a contiguous array."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (1201, 1603, 3), dtype=np.uint8)  # 5.8 MB: several pieces
    view = image.transpose(1, 0, 2)[::-1]
    blob = rng.bytes(3 * WRITE_PIECE + 17)
    with build_resources({"scratch": RenderScratch()}) as resources:
        scratch: RenderScratch = resources.scratch
        spilled = scratch.spill(view)
        assert np.array_equal(np.load(spilled.path, allow_pickle=False), view)
        assert np.array_equal(spilled.load(), view) and spilled.load().shape == view.shape
        assert scratch.spill_bytes(blob).load() == blob
        upload = uuid.uuid4()
        scratch.keep_source(upload, blob)
        assert scratch.source(upload) == blob


def test_a_killed_workers_directory_is_swept_but_a_live_runs_is_not(tmp_path) -> None:
    abandoned, live, other = tmp_path / f"{SCRATCH_PREFIX}dead", tmp_path / f"{SCRATCH_PREFIX}live", tmp_path / "keep"
    for path in (abandoned, live, other):
        path.mkdir()
        (path / "00000000.npy").write_bytes(b"x")
    old = time.time() - ABANDONED_AFTER_SECONDS - 60
    os.utime(abandoned, (old, old))
    os.utime(other, (old, old))
    assert remove_abandoned(tmp_path) == [abandoned]
    assert not abandoned.exists() and live.exists() and other.exists()
