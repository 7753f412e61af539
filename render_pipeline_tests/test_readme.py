"""The README's commands are the ones CI runs, and its numbers are the ones the code uses."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from render_pipeline.commands.up import DAGSTER_RUN_ENV
from render_pipeline.imaging import DEFAULT_PRESET_IDS
from render_pipeline.maintenance.history import HistoryConfig
from render_pipeline.maintenance.retention import RetentionConfig
from render_pipeline.maintenance.schedules import stale_render_reaper_schedule
from render_pipeline.operations.health import HEARTBEAT_TOLERANCE_SECONDS
from render_pipeline.render import sensors
from render_pipeline.render.assets import MAX_UPLOADS_PER_RUN
from render_pipeline.settings import load_settings
from render_pipeline.store.uploads import REREQUEST_AFTER_SECONDS

ROOT = Path(__file__).resolve().parents[1]


def _section_code(title: str) -> list[str]:
    """The lines of the bash blocks under the README heading ``## {title}``."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert blocks, f"no bash block under ## {title}"
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command_and_ci_recipe_verbatim():
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    test_command = next(line for line in _section_code("Quickstart") if "pytest" in line)
    recipe = _section_code("CI")
    assert test_command in ci
    start = ci.index(recipe[0])
    assert ci[start:start + len(recipe)] == recipe


def _readme_text() -> str:
    """The README with its line breaks and runs of spaces folded, so a phrase may wrap."""
    return " ".join((ROOT / "README.md").read_text().split())


def _numbers_the_code_owns() -> list[tuple[str, str]]:
    """(what, the README phrase built from the value in code) for the numbers an operator plans by."""
    words = {2: "two", 3: "three", 4: "four"}
    instance = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    store = load_settings({}).object_store
    retention, history = RetentionConfig(), HistoryConfig()
    reaper_minutes = stale_render_reaper_schedule.cron_schedule.split()[0].removeprefix("*/")
    return [
        ("sensor interval", f"`uploads_sensor`** (every {sensors.build_uploads_sensor([]).minimum_interval_seconds} s)"),
        ("uploads per sensor run", f"requests ranged runs of up to {sensors.MAX_UPLOADS_PER_SENSOR_RUN} new uploads"),
        ("runs per burst", f"split over at least {words[sensors.MIN_RUNS_PER_BURST]} runs"),
        ("uploads per requeue run", f"ranged runs of up to {sensors.MAX_UPLOADS_PER_SENSOR_RUN} uploads per style"),
        ("re-request window", f"requested again after {REREQUEST_AFTER_SECONDS // 60} minutes"),
        ("uploads per backfill run", f"Backfills batch {MAX_UPLOADS_PER_RUN} uploads a run"),
        ("event batch", f"DAGSTER_EVENT_BATCH_SIZE={DAGSTER_RUN_ENV['DAGSTER_EVENT_BATCH_SIZE']}"),
        ("run slots and pool", f"`dagster.yaml`: {instance['run_coordinator']['config']['max_concurrent_runs']} runs, "
                               f"pool `render` limited to {instance['concurrency']['pools']['default_limit']} slots"),
        ("run monitoring", f"`max_runtime_seconds: {instance['run_monitoring']['max_runtime_seconds']}`"),
        ("S3 client", f"`{store.connect_timeout:g}` s, `{store.read_timeout:g}` s, `{store.max_attempts}`"),
        ("default presets", f"| `RENDER_DEFAULT_PRESETS` | `{','.join(DEFAULT_PRESET_IDS)}` |"),
        ("daemon heartbeat", f"daemons (stale after {HEARTBEAT_TOLERANCE_SECONDS:g} s)"),
        ("reaper schedule", f"`stale_render_reaper_job` every {reaper_minutes} min"),
        ("retention", f"delete renders older than {retention.retention_days} days"),
        ("failed archive", f"`failed_archive_days` ({retention.failed_archive_days})"),
        ("history", f"`render_history_days` {history.render_history_days}, "
                    f"`maintenance_history_days` {history.maintenance_history_days}"),
    ]


def test_readme_states_the_numbers_the_code_uses():
    text = _readme_text()
    missing = [f"{what}: {phrase!r}" for what, phrase in _numbers_the_code_owns() if phrase not in text]
    assert not missing, "README does not match the code:\n" + "\n".join(missing)
