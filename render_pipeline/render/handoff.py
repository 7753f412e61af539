"""Hand each render op's list of items to the next op in memory, within one run.

The items are small (their images are in the run's scratch directory), and Dagster's default
IO manager would pickle every output to disk and never delete it.  Render runs use the
in-process executor, so the next op takes the list directly.  An output is dropped once the
op consuming it has produced its own output; until then it stays, so an op retry
(RetryPolicy) can load its inputs again.  A new run (run retry or re-execution) re-executes
every step: the render jobs carry the ALL_STEPS retry strategy for that reason.
"""

from __future__ import annotations

from typing import Any

from dagster import InputContext, IOManager, OutputContext, io_manager

HANDOFF_IO_MANAGER = "render_handoff"


class IntermediateNotInMemory(RuntimeError):
    pass


class RenderHandoffIOManager(IOManager):
    def __init__(self) -> None:
        # One instance per run (the resource is built at run start), so step keys suffice.
        self._values: dict[tuple[str, str], Any] = {}
        self._inputs_of: dict[str, list[tuple[str, str]]] = {}

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        # The step producing this output has finished: its inputs are no longer needed.
        for key in self._inputs_of.pop(context.step_key, []):
            self._values.pop(key, None)
        if obj is not None:
            self._values[(context.step_key, context.name)] = obj

    def load_input(self, context: InputContext) -> Any:
        upstream = context.upstream_output
        key = (upstream.step_key, upstream.name)
        if key not in self._values:
            raise IntermediateNotInMemory(
                f"the output of {upstream.step_key} is not in this process: render runs pass images "
                "in memory, so re-execute all steps of the run (not 'from failure')"
            )
        self._inputs_of.setdefault(context.step_context.step.key, []).append(key)
        return self._values[key]


@io_manager(description="In-memory handoff between the ops of one render run.")
def render_handoff_io_manager(_init_context) -> RenderHandoffIOManager:
    return RenderHandoffIOManager()
