"""The runbook's `SELECT error_message, COUNT(*) ... GROUP BY error_message` gives one row per
cause: refusals recorded by the `uploads` asset and failures recorded by the render ops carry
nothing particular to the file, the object key or the process (paths, addresses, sizes)."""

from __future__ import annotations

import os

from render_pipeline import imaging
from render_pipeline.keys import asset_id_for
from render_pipeline.render.events import UPLOADS_KEY
from render_pipeline_tests.imaging.refusals import NOISE, assert_one_group_per_cause, causes
from render_pipeline_tests.orchestration_helpers import definitions_for, execute, jpeg_bytes, tick


PER_CAUSE = 3  # the engine-level test runs every file of the corpus; here a few per cause suffice


def _count(cause) -> int:
    return min(len(cause.files), PER_CAUSE) + len(cause.bytes_over_limit)


def _env(database_url: str, root) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "LOCAL_STORE_ROOT": str(root), "RENDER_DEFAULT_STYLES": "duotone"}


def _run_requested(defs, instance, *, validation_only: bool = False) -> None:
    """Execute the runs the upload sensor requests; ``validation_only`` drops the render steps."""
    result = tick(defs, instance, "uploads_sensor")
    assert result.run_requests
    for request in result.run_requests:
        if validation_only:
            request = request.with_replaced_attrs(asset_selection=[UPLOADS_KEY])
        assert execute(defs, instance, request).success


def test_recorded_refusals_group_into_one_row_per_cause(database, database_url, tmp_path, instance, monkeypatch):
    root = tmp_path / "objects"
    monkeypatch.setenv("DATABASE_URL", database_url)
    defs = definitions_for(_env(database_url, root), presets=("play-feature",))
    corpus = causes()
    max_bytes = imaging.DecodeLimits().max_bytes
    cause_of_key: dict[str, str] = {}
    for name, cause in corpus.items():
        (root / "uploads" / name).mkdir(parents=True)
        for index, data in enumerate(cause.files[:PER_CAUSE]):
            (root / "uploads" / name / f"{index}.jpg").write_bytes(data)  # the name never decides
            cause_of_key[f"uploads/{name}/{index}.jpg"] = name
        for index, extra in enumerate(cause.bytes_over_limit):  # sparse: the store reports the size
            with open(root / "uploads" / name / f"big-{index}.png", "wb") as handle:
                handle.truncate(max_bytes + extra)
            cause_of_key[f"uploads/{name}/big-{index}.png"] = name

    _run_requested(defs, instance, validation_only=True)

    with database.connection() as conn:
        rows = conn.execute("SELECT object_key, status, error_code, error_message FROM assets").fetchall()
        groups = conn.execute(
            "SELECT error_message, COUNT(*) AS n FROM assets GROUP BY error_message"
        ).fetchall()
    assert {row["object_key"] for row in rows} == set(cause_of_key)
    assert all(row["status"] == "invalid" for row in rows)
    assert_one_group_per_cause(
        [(cause_of_key[r["object_key"]], r["error_code"], r["error_message"]) for r in rows], corpus
    )
    assert len(groups) == len(corpus)
    assert sorted(g["n"] for g in groups) == sorted(_count(cause) for cause in corpus.values())


def test_a_store_failure_on_render_groups_without_its_file_path(database, database_url, tmp_path, instance,
                                                                monkeypatch):
    root = tmp_path / "objects"
    monkeypatch.setenv("DATABASE_URL", database_url)
    defs = definitions_for(_env(database_url, root), presets=("play-feature",))
    for index in range(2):
        (root / "uploads" / f"p{index}").mkdir(parents=True)
        (root / "uploads" / f"p{index}" / "photo.jpg").write_bytes(jpeg_bytes(seed=index))
    (root / "renders").write_bytes(b"")  # a file where the renders/ folder must go: every put fails

    _run_requested(defs, instance)

    with database.connection() as conn:
        rows = conn.execute(
            "SELECT error_message, COUNT(*) AS n FROM renders WHERE asset_id = ANY(%s) GROUP BY error_message",
            ([asset_id_for(f"uploads/p{index}/photo.jpg") for index in range(2)],),
        ).fetchall()
    assert [(r["error_message"], r["n"]) for r in rows] == [("upload: NotADirectoryError: Not a directory", 2)]
    assert not NOISE.search(rows[0]["error_message"]) and os.fspath(tmp_path) not in rows[0]["error_message"]
