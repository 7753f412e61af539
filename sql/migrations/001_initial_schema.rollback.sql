DROP TABLE renders;
DROP TABLE assets;
DROP TABLE size_presets;
DROP TABLE styles;
