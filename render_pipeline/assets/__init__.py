"""Software-defined assets: uploads, one render asset per style, storage usage."""
