-- The pop-render data model: catalogues (styles, size_presets), uploads (assets) and
-- one row per (asset, style, preset) render. Ids are deterministic (UUIDv5 computed by the
-- application from object keys), so retries and duplicate runs upsert the same rows.

CREATE TABLE styles (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    description      text NOT NULL,
    version          integer NOT NULL CHECK (version > 0),
    algorithm_config jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_active        boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE size_presets (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    store      text NOT NULL CHECK (store IN ('app_store', 'play_store', 'generic')),
    width      integer NOT NULL CHECK (width BETWEEN 1 AND 8000),
    height     integer NOT NULL CHECK (height BETWEEN 1 AND 8000),
    fit_mode   text NOT NULL CHECK (fit_mode IN ('cover', 'contain')),
    is_default boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE assets (
    id                uuid PRIMARY KEY,
    partition_key     text UNIQUE,  -- NULL only for keys that cannot be a partition (invalid)
    object_key        text NOT NULL UNIQUE,
    filename          text,
    etag              text,
    byte_size         bigint CHECK (byte_size >= 0),
    sha256            text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    format            text,
    width             integer CHECK (width > 0),
    height            integer CHECK (height > 0),
    status            text NOT NULL DEFAULT 'registered'
                      CHECK (status IN ('registered', 'valid', 'invalid')),
    error_code        text,
    error_message     text,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    dagster_run_id    text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    requested_at      timestamptz,  -- when the sensor last requested a run for this version
    validated_at      timestamptz,
    CHECK (status <> 'invalid' OR error_message IS NOT NULL),
    CHECK (status = 'invalid' OR partition_key IS NOT NULL)
);

CREATE TABLE renders (
    id                        uuid PRIMARY KEY,
    asset_id                  uuid NOT NULL REFERENCES assets (id) ON DELETE RESTRICT,
    style_id                  text NOT NULL REFERENCES styles (id) ON DELETE RESTRICT,
    size_preset_id            text NOT NULL REFERENCES size_presets (id) ON DELETE RESTRICT,
    status                    text NOT NULL DEFAULT 'queued'
                              CHECK (status IN ('queued', 'started', 'completed', 'failed', 'archived')),
    error_message             text,
    attempt                   integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    dagster_run_id            text,
    style_version             integer,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    started_at                timestamptz,
    completed_at              timestamptz,
    archived_at               timestamptz,
    output_minio_key          text,
    preview_minio_key         text,
    output_sha256             text CHECK (output_sha256 ~ '^[0-9a-f]{64}$'),
    output_bytes              bigint CHECK (output_bytes >= 0),
    width                     integer CHECK (width > 0),
    height                    integer CHECK (height > 0),
    metadata                  jsonb NOT NULL DEFAULT '{}'::jsonb,
    render_metadata           jsonb NOT NULL DEFAULT '{}'::jsonb,
    algorithm_config_snapshot jsonb,
    UNIQUE (asset_id, style_id, size_preset_id),
    CHECK (status <> 'failed' OR error_message IS NOT NULL),
    CHECK (status <> 'completed' OR (output_minio_key IS NOT NULL AND completed_at IS NOT NULL)),
    CHECK (status <> 'started' OR started_at IS NOT NULL)
);

CREATE INDEX assets_status_idx ON assets (status, updated_at);
