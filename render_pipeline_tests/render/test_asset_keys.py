"""Render asset keys are the catalogue's style ids (`renders/pop-poster`), while the graph and
op names Dagster derives from them stay Python identifiers (`renders__pop_poster`)."""

from __future__ import annotations

from dagster import AssetCheckKey, AssetSelection

from render_pipeline import imaging
from render_pipeline.definitions import build_definitions
from render_pipeline.render.events import PRESETS_CHECK, render_asset_key
from render_pipeline.settings import load_settings

STYLE_KEYS = {"renders/pop-poster", "renders/halftone", "renders/warhol-grid", "renders/duotone"}


def test_render_asset_keys_and_checks_spell_the_style_ids() -> None:
    defs = build_definitions(load_settings({}))
    graph = defs.resolve_asset_graph()
    renders = AssetSelection.groups("renders").resolve(graph)
    assert {key.to_user_string() for key in renders} == STYLE_KEYS == {f"renders/{s}" for s in imaging.STYLES}
    assert {render_asset_key(s) for s in imaging.STYLES} == renders
    assert {AssetCheckKey(key, PRESETS_CHECK) for key in renders} <= set(graph.asset_check_keys)


def test_graph_names_stay_identifiers_that_run_config_addresses() -> None:
    """The requeue sensor's run config addresses each style's graph by
    ``render_asset_key(style).to_python_identifier()``; the UI's Launchpad shows the same name."""
    job = build_definitions(load_settings({})).resolve_job_def("render_uploads")
    nodes = {node.name for node in job.graph.nodes}
    graphs = {render_asset_key(s).to_python_identifier() for s in imaging.STYLES}
    assert graphs == {"renders__pop_poster", "renders__halftone", "renders__warhol_grid", "renders__duotone"}
    assert graphs <= nodes and all(name.isidentifier() for name in nodes)
