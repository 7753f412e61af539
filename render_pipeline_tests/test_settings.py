"""Settings come from the old service's variable names; bad values name the variable."""

from __future__ import annotations

import pytest

from render_pipeline.settings import ConfigError, load_settings


def test_nothing_configured_means_embedded_database_and_local_store(tmp_path):
    settings = load_settings({"RENDER_PIPELINE_HOME": str(tmp_path)})
    assert settings.database.embedded
    assert not settings.object_store.is_s3
    assert settings.object_store.local_root == tmp_path / "objects"
    assert settings.object_store.bucket == "render-assets"
    assert settings.log_level == "INFO"


def test_seed_service_db_variables_build_a_conninfo():
    settings = load_settings(
        {"DB_HOST": "db.internal", "DB_PORT": "6543", "DB_NAME": "aso_render", "DB_USER": "render",
         "DB_PASSWORD": "s3cr3t"}
    )
    assert settings.database.source == "DB_HOST"
    assert "host=db.internal" in settings.database.conninfo and "port=6543" in settings.database.conninfo


def test_database_url_wins_over_db_variables():
    settings = load_settings({"DATABASE_URL": "postgresql://u:p@h:5432/d", "DB_HOST": "ignored"})
    assert settings.database.source == "DATABASE_URL"


def test_minio_host_port_without_scheme_is_accepted():
    settings = load_settings({"MINIO_ENDPOINT": "minio:9000", "MINIO_ACCESS_KEY": "AKIA1", "MINIO_SECRET_KEY": "wJalr-secret"})
    assert settings.object_store.endpoint_url == "http://minio:9000"
    assert "wJalr-secret" not in settings.object_store.describe()


def test_upload_events_are_off_by_default_and_read_from_the_app_database():
    assert not load_settings({}).upload_events.enabled
    events = load_settings({"RENDER_EVENTS_TABLE": "events.minio"}).upload_events
    assert events.enabled and events.table == "events.minio" and events.database_url is None


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DB_PORT": "5432"}, "DB_HOST"),
        ({"DB_HOST": "h", "DB_PORT": "fifty"}, "DB_PORT"),
        ({"DB_HOST": "h", "DB_PORT": "70000"}, "DB_PORT"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u@h/d?bogus_option=1"}, "DATABASE_URL"),
        ({"MINIO_ENDPOINT": "http://minio:9000"}, "MINIO_ACCESS_KEY"),
        ({"MINIO_ENDPOINT": "http://minio:9000", "MINIO_ACCESS_KEY": "a"}, "MINIO_SECRET_KEY"),
        ({"MINIO_ENDPOINT": "ftp://minio", "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "b"}, "MINIO_ENDPOINT"),
        ({"MINIO_BUCKET": "Bad_Bucket"}, "MINIO_BUCKET"),
        ({"MINIO_READ_TIMEOUT": "-1"}, "MINIO_READ_TIMEOUT"),
        ({"MINIO_RETRY_SECONDS": "soon"}, "MINIO_RETRY_SECONDS"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"RENDER_EVENTS_TABLE": 'minio_events"; DROP TABLE assets; --'}, "RENDER_EVENTS_TABLE"),
        ({"RENDER_EVENTS_TABLE": "a.b.c"}, "RENDER_EVENTS_TABLE"),
        ({"RENDER_EVENTS_DATABASE_URL": "postgresql://minio@db/events"}, "RENDER_EVENTS_DATABASE_URL"),
        ({"RENDER_EVENTS_TABLE": "t", "RENDER_EVENTS_DATABASE_URL": "mysql://x"}, "RENDER_EVENTS_DATABASE_URL"),
    ],
)
def test_bad_settings_name_the_variable(env, variable):
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env)
    assert str(excinfo.value).startswith(f"{variable}:")
    assert excinfo.value.variable == variable
