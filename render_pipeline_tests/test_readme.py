"""The README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

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
