"""Arguments several commands share: time windows, style filters and bounded limits.

Not a command (its name starts with "_", so the CLI does not register it).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from render_pipeline import imaging

_RELATIVE = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_when(text: str) -> datetime:
    """An ISO time (UTC if naive) or a span ago: 30m / 6h / 2d."""
    match = _RELATIVE.match(text.strip())
    if match:
        return datetime.now(UTC) - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an ISO time nor like 30m / 6h / 2d") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def selection_problem(*, limit: int, most: int, styles: Sequence[str]) -> str | None:
    """Why ``--limit`` (1 to ``most``) or ``--style`` is unusable, or None when both are fine."""
    if not 1 <= limit <= most:
        return f"--limit must be between 1 and {most} (got {limit})"
    unknown = [s for s in styles if s not in imaging.STYLES]
    if unknown:
        return f"unknown style(s) {', '.join(unknown)}; choose from {', '.join(imaging.STYLES)}"
    return None
