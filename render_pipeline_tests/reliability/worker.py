"""A run worker in its own process, as the run launcher gives each run in production.

`python -m render_pipeline_tests.reliability.worker REQUEST_FILE` executes one serialized
RunRequest against the instance in $DAGSTER_HOME, with the definitions the environment
configures (the same `build_definitions` as `render_pipeline.definitions`), and prints
`run_id status`.  Like the launcher's worker (`dagster api execute_run`) it reports its pid
first ("Started process for run (pid: N)"), which is how a dead worker is recognised; tests
SIGKILL it mid-render.  `execute_serialized` does the same inside a
process pool (the burst runs two workers, as two run slots would).
"""

from __future__ import annotations

import json
import os
import sys

_state: dict = {}


def _setup() -> None:
    from dagster import DagsterInstance

    from render_pipeline_tests.orchestration_helpers import definitions_for

    presets = tuple(os.environ.get("RELIABILITY_PRESETS", "play-feature").split(","))
    _state["defs"] = definitions_for(dict(os.environ), presets=presets)
    _state["instance"] = DagsterInstance.get()


def execute_serialized(serialized_request: str) -> tuple[str, bool]:
    from dagster._core.events import EngineEventData
    from dagster._core.utils import make_new_run_id
    from dagster_shared.serdes import deserialize_value

    from render_pipeline_tests.orchestration_helpers import execute

    if not _state:
        _setup()
    run_id = make_new_run_id()
    _state["instance"].report_engine_event(f"Started process for run (pid: {os.getpid()}).", run_id=run_id,
                                           job_name="render_uploads",
                                           engine_event_data=EngineEventData.in_process(os.getpid()))
    outcome = execute(_state["defs"], _state["instance"], deserialize_value(serialized_request), run_id=run_id)
    return outcome.run_id, outcome.success


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as handle:
        serialized = handle.read()
    run_id, success = execute_serialized(serialized)
    print(json.dumps({"run_id": run_id, "success": success}), flush=True)
    return 0 if success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
