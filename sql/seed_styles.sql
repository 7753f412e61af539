-- Style catalogue; mirrors render_pipeline.imaging.STYLES (checked by render_pipeline_tests/imaging/test_seeds.py).
INSERT INTO styles (id, name, description, version, algorithm_config, is_active) VALUES
    ('pop-poster', 'Pop poster', 'k-means posterization mapped by luminance onto a bold pop palette, with black ink outlines.', 3, '{"k": 6, "palette": ["#1b1340", "#c2185b", "#ff5722", "#00b8d4", "#ffd600", "#fff8e1"], "outline_width": 0.003, "edge_threshold": 24, "smoothing": 0.004}'::jsonb, true),
    ('halftone', 'Halftone', 'Ben-Day dots on a screen angle over flat posterized colour, with ink outlines.', 3, '{"k": 5, "palette": ["#14142b", "#1565c0", "#e53935", "#ffd54f", "#fffdf5"], "dot_cells": 90, "angle": 45.0, "outline_width": 0.003, "edge_threshold": 24, "smoothing": 0.004}'::jsonb, true),
    ('warhol-grid', 'Warhol grid', 'A grid of the posterized image, each panel in a different pop palette.', 3, '{"rows": 2, "cols": 2, "k": 4, "palettes": [["#1a1a1a", "#e6007e", "#ffde00", "#00a0e9"], ["#1a1a1a", "#ff6f00", "#7cfc00", "#ff80ab"], ["#1a1a1a", "#6a1b9a", "#00e5ff", "#ffea00"], ["#1a1a1a", "#d50000", "#2962ff", "#fff176"]], "gutter": 0.02, "gutter_colour": "#fafafa", "outline_width": 0.002, "edge_threshold": 24, "smoothing": 0.004}'::jsonb, true),
    ('duotone', 'Duotone', 'Luminance mapped between two colours, with optional posterize steps.', 3, '{"dark": "#1e0a5e", "light": "#ff4d8d", "steps": 4, "stretch": true}'::jsonb, true)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name,
    description = EXCLUDED.description,
    version = EXCLUDED.version,
    algorithm_config = EXCLUDED.algorithm_config,
    is_active = EXCLUDED.is_active;
