-- Size presets; mirrors render_pipeline.imaging.PRESETS (checked by render_pipeline_tests/imaging/test_seeds.py).
INSERT INTO size_presets (id, name, store, width, height, fit_mode, is_default) VALUES
    ('iphone-6.9', 'iPhone 6.9" display', 'app_store', 1320, 2868, 'cover', true),
    ('iphone-6.7', 'iPhone 6.7" display', 'app_store', 1290, 2796, 'cover', false),
    ('iphone-6.5', 'iPhone 6.5" display', 'app_store', 1284, 2778, 'cover', false),
    ('ipad-13', 'iPad 13" display', 'app_store', 2064, 2752, 'cover', false),
    ('ipad-12.9', 'iPad Pro 12.9" display', 'app_store', 2048, 2732, 'cover', false),
    ('play-phone', 'Google Play phone screenshot', 'play_store', 1080, 1920, 'cover', true),
    ('play-feature', 'Google Play feature graphic', 'play_store', 1024, 500, 'contain', false),
    ('square-1024', 'Square 1024', 'generic', 1024, 1024, 'cover', true)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name,
    store = EXCLUDED.store,
    width = EXCLUDED.width,
    height = EXCLUDED.height,
    fit_mode = EXCLUDED.fit_mode,
    is_default = EXCLUDED.is_default;
