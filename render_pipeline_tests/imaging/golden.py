"""Golden fingerprints: sha256 of output PNG, output pixels and preview per style and case.

When a style's output changes on purpose: bump its ``version`` in
``render_pipeline/imaging/styles.py`` and in ``STYLE_VERSIONS`` below, run ``PYTHONPATH=.
python -m render_pipeline_tests.imaging.golden`` and paste the printed dict over ``GOLDEN`` in
``test_render.py``.  The PNG hash also depends on the zlib Python links (recorded as
``versions.zlib`` in the render metadata); the pixel hash does not.
"""

from __future__ import annotations

import hashlib
import json

from render_pipeline.imaging import STYLES, render

from .inputs import encoded, jpeg, photo

# The style versions GOLDEN was recorded at (checked by test_styles.test_registries).
STYLE_VERSIONS = {"pop-poster": 3, "halftone": 3, "warhol-grid": 3, "duotone": 3}

CASES = {
    "png-640x480@play-phone": (lambda: encoded(photo(640, 480, seed=7), "PNG"), "play-phone"),
    "jpeg-2600x1950@play-feature": (lambda: jpeg(2600, 1950, seed=8), "play-feature"),
}


def fingerprints() -> dict[str, dict[str, str]]:
    """``{"style/case": {"png": sha, "pixels": sha, "preview": sha}}`` for every style and case."""
    result = {}
    for case, (make, preset) in CASES.items():
        data = make()
        for style in STYLES:
            rendered = render(data, style, preset)
            result[f"{style}/{case}"] = {
                "png": hashlib.sha256(rendered.output_png).hexdigest()[:16],
                "pixels": rendered.metadata["pixels_sha256"][:16],
                "preview": hashlib.sha256(rendered.preview_jpeg).hexdigest()[:16],
            }
    return result


if __name__ == "__main__":
    print(json.dumps(fingerprints(), indent=4))
