-- The table MinIO's PostgreSQL target writes bucket events to (notify_postgres, format=access):
-- MinIO creates it with exactly these two columns when it is missing; creating it first adds
-- the index the uploads sensor reads by (event_time order) and a role that may only append.
-- Run as the owner of the app database:  psql "$DATABASE_URL" -v minio_password=... -f events-table.sql
CREATE TABLE IF NOT EXISTS minio_events (
    event_time TIMESTAMP WITH TIME ZONE NOT NULL,
    event_data JSONB
);
CREATE INDEX IF NOT EXISTS minio_events_event_time_idx ON minio_events (event_time);

\if :{?minio_password}
DO $$ BEGIN
    CREATE ROLE minio_events LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER ROLE minio_events PASSWORD :'minio_password';
-- MinIO checks the table with SELECT 1 FROM minio_events, then only INSERTs.
GRANT SELECT, INSERT ON minio_events TO minio_events;
\endif
