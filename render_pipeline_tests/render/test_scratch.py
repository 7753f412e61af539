"""The run scratch directory: items round-trip exactly, sources and decodes are shared, and
the directory is gone when the run's resources are torn down."""

from __future__ import annotations

import uuid

import numpy as np
from dagster import build_resources

from render_pipeline.render.scratch import RenderScratch


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
