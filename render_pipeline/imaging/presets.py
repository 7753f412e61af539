"""Store output sizes (mirrored by ``sql/seed_size_presets.sql``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Store = Literal["app_store", "play_store", "generic"]
Fit = Literal["cover", "contain"]


@dataclass(frozen=True)
class SizePreset:
    """An exact output size; ``cover`` centre-crops the source, ``contain`` pads it."""

    id: str
    name: str
    store: Store
    width: int
    height: int
    fit: Fit

    def scale_for(self, width: int, height: int) -> float:
        """Linear scale that maps a ``width``x``height`` source onto this preset's fit."""
        sx, sy = self.width / width, self.height / height
        return max(sx, sy) if self.fit == "cover" else min(sx, sy)


_ALL = (
    SizePreset("iphone-6.9", 'iPhone 6.9" display', "app_store", 1320, 2868, "cover"),
    SizePreset("iphone-6.7", 'iPhone 6.7" display', "app_store", 1290, 2796, "cover"),
    # App Store Connect accepts 1242x2688 or 1284x2778 for 6.5"; 1284x2778 is the newer native size.
    SizePreset("iphone-6.5", 'iPhone 6.5" display', "app_store", 1284, 2778, "cover"),
    SizePreset("ipad-13", 'iPad 13" display', "app_store", 2064, 2752, "cover"),
    SizePreset("ipad-12.9", 'iPad Pro 12.9" display', "app_store", 2048, 2732, "cover"),
    SizePreset("play-phone", "Google Play phone screenshot", "play_store", 1080, 1920, "cover"),
    SizePreset("play-feature", "Google Play feature graphic", "play_store", 1024, 500, "contain"),
    SizePreset("square-1024", "Square 1024", "generic", 1024, 1024, "cover"),
)

PRESETS: Mapping[str, SizePreset] = MappingProxyType({p.id: p for p in _ALL})
DEFAULT_PRESET_IDS: tuple[str, ...] = ("iphone-6.9", "play-phone", "square-1024")


def get_preset(preset_id: str) -> SizePreset:
    """Look a preset up by id; an unknown id is a ``LookupError`` listing the known ones."""
    try:
        return PRESETS[preset_id]
    except KeyError:
        raise LookupError(
            f"unknown size preset {preset_id!r} (known: {', '.join(PRESETS)})"
        ) from None
