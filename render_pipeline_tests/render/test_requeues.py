"""The requeue sensor claims each requeued render once and requests ranged runs of many
uploads per style and preset set; the runs render exactly the claimed rows."""

from __future__ import annotations

import threading

import pytest

from render_pipeline.keys import asset_id_for, render_id_for
from render_pipeline.render.job import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, REQUEUE_RUN_TAG
from render_pipeline.store import maintenance as maintenance_store
from render_pipeline_tests.orchestration_helpers import definitions_for, execute, jpeg_bytes, run_all, tick

PRESETS = ("play-feature", "square-1024")
UPLOADS = [f"q{i}/photo.jpg" for i in range(6)]


@pytest.fixture
def rendered(database, database_url, tmp_path, instance, monkeypatch):
    """Six uploads rendered in two styles at two presets (24 completed renders)."""
    root = tmp_path / "objects"
    env = {"DATABASE_URL": database_url, "LOCAL_STORE_ROOT": str(root), "RENDER_DEFAULT_STYLES": "duotone,halftone"}
    monkeypatch.setenv("DATABASE_URL", database_url)
    defs = definitions_for(env, presets=PRESETS)
    for index, partition_key in enumerate(UPLOADS):
        path = root / "uploads" / partition_key
        path.parent.mkdir(parents=True)
        path.write_bytes(jpeg_bytes(64, 48, seed=index))
    run_all(defs, instance, tick(defs, instance, "uploads_sensor"))
    return defs


def _id(partition_key: str, style: str, preset: str):
    return render_id_for(asset_id_for(f"uploads/{partition_key}"), style, preset)


def _rows(database) -> dict:
    with database.connection() as conn:
        return {r["id"]: r for r in conn.execute("SELECT * FROM renders").fetchall()}


def test_racing_evaluations_request_each_requeued_render_once_in_ranged_runs(rendered, database, instance):
    # Both presets of duotone on four uploads (gaps between them), one preset of halftone on three.
    chosen = [_id(pk, "duotone", p) for pk in (UPLOADS[0], UPLOADS[2], UPLOADS[4], UPLOADS[5]) for p in PRESETS]
    chosen += [_id(pk, "halftone", "play-feature") for pk in UPLOADS[1:4]]
    before = _rows(database)
    with database.connection() as conn:
        assert len(maintenance_store.requeue(conn, chosen, reason="re-render", from_statuses=("completed",))) == 11

    barrier, results = threading.Barrier(2), []

    def evaluate() -> None:
        barrier.wait()
        results.append(tick(rendered, instance, "requeue_sensor").run_requests or [])

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    requests = [request for result in results for request in result]
    rows = _rows(database)
    by_run: dict[str, set] = {}
    for render_id in chosen:
        by_run.setdefault(rows[render_id]["metadata"]["requeue_run"], set()).add(render_id)
    # Every render claimed once, in one of the requested runs; each run of one style and preset set.
    assert sorted(r.run_key for r in requests) == sorted(by_run) and len(set(by_run)) == len(requests)
    assert sum(len(ids) for ids in by_run.values()) == len(chosen)
    # Claims take turns: one evaluation claims everything, the other finds nothing left, so
    # no upload's presets are split between runs. 4 duotone and 3 halftone uploads in ranged
    # runs (gaps between them): [1, 2, 2, 2].
    assert sorted(bool(result) for result in results) == [False, True]
    sizes = sorted(int(r.tags["render_pipeline/uploads"]) for r in requests)
    assert sizes == [1, 2, 2, 2], sizes
    for request in requests:
        assert request.tags[REQUEUE_RUN_TAG] == request.run_key
        assert PARTITION_RANGE_START_TAG in request.tags and PARTITION_RANGE_END_TAG in request.tags
        assert len({rows[i]["style_id"] for i in by_run[request.run_key]}) == 1
    # A later tick finds nothing new to request for the claimed rows.
    assert not tick(rendered, instance, "requeue_sensor").run_requests

    # The runs render exactly the claimed rows, though their ranges span uploads not requeued;
    # a request executed twice (a duplicated launch) changes nothing the second time.
    for request in requests:
        assert execute(rendered, instance, request).success
    done = _rows(database)
    for request in requests[:1]:
        assert execute(rendered, instance, request).success
    assert _rows(database) == done
    for render_id, row in done.items():
        assert row["status"] == "completed"
        if render_id in chosen:  # one attempt by the first run, one by its requeue run
            assert row["attempt"] == 2 and row["completed_at"] > before[render_id]["completed_at"], row
        else:
            assert (row["attempt"], row["completed_at"]) == (1, before[render_id]["completed_at"]), row
