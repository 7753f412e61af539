"""`render-pipeline uploads register KEY…` and `uploads status KEY…`.

`register` does what the uploads sensor does for each new object, for objects named on the
command line: the upload is claimed in the app database and its partition added to the Dagster
instance, so `dagster asset materialize --select uploads --partition KEY` (CI, a one-off) can
run it.  `status` says where each upload stands, render by render, and exits 1 unless each is
finished: invalid with its reason, or valid with every render completed.
"""

from __future__ import annotations

import argparse
import sys

from render_pipeline.keys import UPLOADS_PREFIX, InvalidUploadKey, asset_id_for, partition_key_for
from render_pipeline.render.partitions import uploads_partitions
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.factory import object_store_from_settings
from render_pipeline.settings import load_settings
from render_pipeline.stack import stack_instance
from render_pipeline.store import renders as renders_store
from render_pipeline.store import uploads as uploads_store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("uploads", help="register objects under uploads/ as upload partitions")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("register", help="claim objects and add their partitions to the Dagster instance")
    add.add_argument("keys", nargs="+", metavar="KEY", help="object key (uploads/ID/FILE) or partition key (ID/FILE)")
    status = actions.add_parser("status", help="each upload's status and renders; exit 1 unless all finished")
    status.add_argument("keys", nargs="+", metavar="KEY", help="object key (uploads/ID/FILE) or partition key (ID/FILE)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return _register(args.keys) if args.action == "register" else _status(args.keys)


def _status(raw_keys: list[str]) -> int:
    settings = load_settings()
    keys = [key.removeprefix(UPLOADS_PREFIX) for key in raw_keys]
    database = PostgresResource.from_settings(settings.database, settings.home)
    try:
        with database.connection() as conn:
            uploads = uploads_store.uploads_by_partition(conn, keys)
            renders = renders_store.renders_of(conn, [row.id for row in uploads.values()])
    finally:
        database.close()
    finished = True
    for key in keys:
        upload = uploads.get(key)
        if upload is None:
            print(f"{key}: not registered")
            finished = False
            continue
        own = [render for render in renders if render["asset_id"] == upload.id]
        print(f"{key}: {upload.status}" + (f" ({upload.error_message})" if upload.error_message else ""))
        for render in own:
            print(f"  {render['style_id']} {render['size_preset_id']}: {render['status']}"
                  + (f" ({render['error_message']})" if render["error_message"] else ""))
        if upload.status == "registered" or (upload.status == "valid" and (
                not own or any(render["status"] != "completed" for render in own))):
            finished = False
    return 0 if finished else 1


def _register(raw_keys: list[str]) -> int:
    settings = load_settings()
    store = object_store_from_settings(settings.object_store)
    sightings, problems = [], []
    for raw in raw_keys:
        object_key = raw if raw.startswith(UPLOADS_PREFIX) else UPLOADS_PREFIX + raw
        try:
            partition_key = partition_key_for(object_key)
        except InvalidUploadKey as exc:
            problems.append(f"{raw!r}: {exc}")
            continue
        info = store.head(object_key)
        if info is None:
            problems.append(f"{object_key!r}: no such object in {store.describe()}")
            continue
        sightings.append(uploads_store.UploadSighting(asset_id_for(object_key), object_key, partition_key,
                                                      info.etag, info.size))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1  # nothing registered: all keys or none
    instance = stack_instance(settings)
    database = PostgresResource.from_settings(settings.database, settings.home)
    try:
        with database.connection() as conn:
            uploads_store.mark_requested(conn, sightings)
    finally:
        database.close()
    keys = [sighting.partition_key for sighting in sightings]
    known = instance.get_existing_dynamic_partitions(uploads_partitions.name, keys)
    instance.add_dynamic_partitions(uploads_partitions.name, [k for k in keys if k not in known])
    for key in keys:
        print(f"registered partition {key}")
    return 0
