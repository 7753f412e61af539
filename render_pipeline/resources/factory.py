"""Build the resources for the configured environment (Dagster definitions, CLI, tests)."""

from __future__ import annotations

from dagster import EnvVar

from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import LocalObjectStore, ObjectStore, S3Client, S3ObjectStore
from render_pipeline.resources.upload_events import UploadEventsResource
from render_pipeline.settings import ObjectStoreSettings, Settings


def object_store_from_settings(settings: ObjectStoreSettings) -> ObjectStore:
    """A store with secrets as plain values, for code running outside Dagster."""
    if not settings.is_s3:
        return LocalObjectStore(root=str(settings.local_root), retry_seconds=settings.retry_seconds)
    return S3ObjectStore(s3=_s3_client(settings, settings.access_key, settings.secret_key), bucket=settings.bucket,
                         retry_seconds=settings.retry_seconds)


def dagster_resources(settings: Settings) -> dict[str, object]:
    """Resources for Definitions: secrets stay EnvVar references, never values in the UI."""
    store = settings.object_store
    if store.is_s3:
        object_store: ObjectStore = S3ObjectStore(
            s3=_s3_client(store, EnvVar("MINIO_ACCESS_KEY"), EnvVar("MINIO_SECRET_KEY")), bucket=store.bucket,
            retry_seconds=store.retry_seconds,
        )
    else:
        object_store = LocalObjectStore(root=str(store.local_root), retry_seconds=store.retry_seconds)

    db = settings.database
    if db.source == "DATABASE_URL":
        database = PostgresResource(url=EnvVar("DATABASE_URL"))
    elif db.source == "DB_HOST":
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(db.conninfo or "")
        database = PostgresResource(
            host=str(info["host"]),
            port=int(info["port"]),
            dbname=str(info["dbname"]),
            user=str(info["user"]),
            password=EnvVar("DB_PASSWORD") if info.get("password") else None,
        )
    else:
        database = PostgresResource(embedded_home=str(settings.home))
    events = settings.upload_events
    upload_events = UploadEventsResource(
        table=events.table, url=EnvVar("RENDER_EVENTS_DATABASE_URL") if events.database_url else None,
        bucket=store.bucket,
    )
    return {"database": database, "object_store": object_store, "upload_events": upload_events}


def _s3_client(settings: ObjectStoreSettings, access_key, secret_key) -> S3Client:
    return S3Client(
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_attempts=settings.max_attempts,
    )
