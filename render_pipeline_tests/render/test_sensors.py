"""How the uploads sensor groups a tick's new uploads into runs."""

from __future__ import annotations

import uuid

import pytest

from render_pipeline.render import sensors
from render_pipeline.store.uploads import UploadSighting


def _sightings(count: int) -> list[UploadSighting]:
    return [UploadSighting(uuid.uuid4(), f"uploads/u{i}/p.jpg", f"u{i}/p.jpg", f"e{i}", 1000) for i in range(count)]


@pytest.mark.parametrize(("uploads", "sizes"), [
    (1, [1]),
    (2, [1, 1]),  # one run per run slot, so both cores render
    (5, [3, 2]),
    (64, [32, 32]),
    (129, [43, 43, 43]),  # no run over MAX_UPLOADS_PER_SENSOR_RUN
])
def test_a_burst_is_split_into_near_equal_runs_one_per_run_slot_at_least(uploads: int, sizes: list[int]) -> None:
    sightings = _sightings(uploads)
    batches = sensors.split_into_runs(sightings)
    assert [len(batch) for batch in batches] == sizes
    assert [s for batch in batches for s in batch] == sightings  # contiguous, in order: ranged runs
    assert max(sizes) <= sensors.MAX_UPLOADS_PER_SENSOR_RUN
