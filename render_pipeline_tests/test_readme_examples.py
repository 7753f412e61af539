"""The README's `--select` examples select what they say, against the real definitions.

Every line of a fenced code block, and every inline code span, that passes `--select` is an
example.  Its selection is resolved as `dagster asset list -m render_pipeline.definitions
--select …` resolves it (``AssetSelection.from_coercible(select.split(","))``, see
dagster/_cli/asset.py); the first `dagster asset list` example also runs verbatim through the
installed CLI.  An example says what it selects in a trailing ``# selects: key, key`` comment;
without one, a selection of plain keys must select exactly those, and any other must select
something.  Asset keys named in README.md and docs/ must be keys the definitions have.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import AssetSelection

from render_pipeline.definitions import build_definitions
from render_pipeline.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCED_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
SELECT_WITH_VALUE = re.compile(r"--select[= ]+\S")  # a bare `--select` in prose is no example
CLAIM = re.compile(r"\s#\s*selects:\s*(?P<keys>.+)$")
# A quoted or bare asset key with no wildcard or traversal: `renders/pop-poster`, `key:"uploads"`.
PLAIN_KEY = re.compile(r'^(?:key:"(?P<quoted>[^"*]+)"|(?P<bare>[\w-]+(?:/[\w-]+)*))$')
# `renders/<word>` not followed by `/`: an asset key (object keys are `renders/{render_id}/…`).
RENDER_KEY_MENTION = re.compile(r"\brenders/[\w-]+(?![\w/-])")


@dataclass(frozen=True)
class SelectExample:
    line: str
    args: tuple[str, ...]
    selection: str
    claimed: frozenset[str] | None  # exact keys the example says it selects, if it says

    def __str__(self) -> str:
        return self.line


def _command_lines(markdown: str) -> list[str]:
    """Lines of fenced blocks (continuations joined) and inline code spans passing `--select`."""
    lines = []
    for block in FENCED_BLOCK.findall(markdown):
        lines += block.replace("\\\n", " ").splitlines()
    lines += INLINE_CODE.findall(FENCED_BLOCK.sub("", markdown))
    return [line.strip() for line in lines if SELECT_WITH_VALUE.search(line)]


def _example(line: str) -> SelectExample:
    claim = CLAIM.search(line)
    args = tuple(shlex.split(line, comments=True))
    values = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--select"]
    values += [arg.removeprefix("--select=") for arg in args if arg.startswith("--select=")]
    assert len(values) == 1, f"README example without exactly one --select value: {line}"
    claimed = None
    if claim:
        claimed = frozenset(key.strip().strip("`") for key in claim["keys"].split(","))
    else:
        plain = [PLAIN_KEY.match(item) for item in values[0].split(",")]
        if all(plain):
            claimed = frozenset(m["quoted"] or m["bare"] for m in plain)
    return SelectExample(line, args, values[0], claimed)


def readme_examples() -> list[SelectExample]:
    return [_example(line) for line in _command_lines(README.read_text(encoding="utf-8"))]


EXAMPLES = readme_examples()


@pytest.fixture(scope="module")
def asset_graph():
    return build_definitions(load_settings({})).resolve_asset_graph()


def _selected(selection: str, asset_graph) -> set[str]:
    keys = AssetSelection.from_coercible(selection.split(",")).resolve(asset_graph, allow_missing=True)
    return {key.to_user_string() for key in keys}


def test_the_readme_has_select_examples_naming_render_keys() -> None:
    assert EXAMPLES, "no `--select` example found in README.md"
    assert any(ex.claimed and any(k.startswith("renders/") for k in ex.claimed) for ex in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda ex: ex.selection)
def test_readme_select_example_selects_what_it_says(example: SelectExample, asset_graph) -> None:
    selected = _selected(example.selection, asset_graph)
    defined = sorted(key.to_user_string() for key in asset_graph.get_all_asset_keys())
    assert selected, f"{example}\n  selects no asset (defined: {defined})"
    if example.claimed is not None:
        assert selected == example.claimed, f"{example}\n  selects {sorted(selected)}"


def test_first_asset_list_example_runs_verbatim_through_the_cli(tmp_path: Path) -> None:
    """The `dagster` CLI installed beside this interpreter prints what the README says (from the
    repository root; no instance: an empty DAGSTER_HOME)."""
    listing = [ex for ex in EXAMPLES if Path(ex.args[0]).name == "dagster" and ex.args[1:3] == ("asset", "list")]
    assert listing, "no `dagster asset list … --select …` example in README.md"
    example = listing[0]
    (tmp_path / "dagster.yaml").write_text("")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run([str(dagster), *example.args[1:]], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = set(result.stdout.split())
    assert printed and printed == (example.claimed or printed), f"{example}\n  prints {sorted(printed)}"


def test_render_asset_keys_named_in_readme_and_docs_are_defined(asset_graph) -> None:
    defined = {key.to_user_string() for key in asset_graph.get_all_asset_keys()}
    documents = [README, *sorted((ROOT / "docs").glob("*.md"))]
    mentioned = {(doc.name, key) for doc in documents
                 for key in RENDER_KEY_MENTION.findall(doc.read_text(encoding="utf-8"))}
    assert mentioned, "README.md and docs/ name no render asset key"
    assert [m for m in sorted(mentioned) if m[1] not in defined] == []

