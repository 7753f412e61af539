#!/usr/bin/env bash
# Point MinIO's bucket notifications for uploads/ at the events table the uploads sensor reads.
#
#   MINIO_EVENTS_CONNECTION='host=db.internal port=5432 dbname=aso_render user=minio_events password=... sslmode=disable' \
#     deploy/minio/setup-events.sh ALIAS BUCKET
#
# ALIAS is an `mc alias` with admin rights; BUCKET is MINIO_BUCKET.  Create the table and the
# minio_events role first (events-table.sql), then set RENDER_EVENTS_TABLE=minio_events for the
# pipeline (and RENDER_EVENTS_DATABASE_URL if the table is not in the app database).
# The connection string reaches `mc` from the environment, not from this script's arguments.
set -euo pipefail

alias_name=${1:?usage: setup-events.sh ALIAS BUCKET}
bucket=${2:?usage: setup-events.sh ALIAS BUCKET}
: "${MINIO_EVENTS_CONNECTION:?set MINIO_EVENTS_CONNECTION to the libpq connection string MinIO writes events with}"
table=${MINIO_EVENTS_TABLE:-minio_events}
queue_dir=${MINIO_EVENTS_QUEUE_DIR:-/data/.minio-events-queue}  # on the MinIO server: events wait here while PostgreSQL is down

mc admin config set "$alias_name" notify_postgres:render \
    connection_string="$MINIO_EVENTS_CONNECTION" table="$table" format=access queue_dir="$queue_dir"
mc admin service restart "$alias_name"
mc event add "$alias_name/$bucket" arn:minio:sqs::render:postgresql --event put --prefix uploads/
mc event ls "$alias_name/$bucket"
