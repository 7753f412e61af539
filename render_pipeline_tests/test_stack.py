"""What `up` records about the running stack: enough for `doctor` to check that stack from
another shell, and never a secret."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from render_pipeline.settings import load_settings
from render_pipeline.stack import DatabaseUrls, new_record, psql_uri, read_record, running_stack, write_record

SECRETS = {"DB_PASSWORD": "pw-db-1", "MINIO_ACCESS_KEY": "ak-minio-2", "MINIO_SECRET_KEY": "sk-minio-3"}


def _stack_environ(tmp_path) -> dict[str, str]:
    return {
        "RENDER_PIPELINE_HOME": str(tmp_path),
        "DATABASE_URL": "postgresql://render:pw-url-4@db.internal:5432/aso_render",
        "DAGSTER_PG_URL": "postgresql+psycopg2://render:pw-url-5@db.internal:5432/dagster",
        "MINIO_ENDPOINT": "http://minio:9000", "MINIO_BUCKET": "render-assets", **SECRETS,
        "RENDER_EVENTS_TABLE": "minio_events",
        "RENDER_EVENTS_DATABASE_URL": "postgresql://events:pw-url-6@events.internal:5432/minio",
    }


def test_the_record_holds_no_secret_and_gives_them_back_only_from_the_shell(tmp_path):
    environ = _stack_environ(tmp_path)
    settings = load_settings(environ)
    urls = DatabaseUrls(app=environ["DATABASE_URL"], dagster=environ["DAGSTER_PG_URL"])
    write_record(tmp_path, new_record(settings, urls, "http://127.0.0.1:3000", environ=environ))
    text = (tmp_path / "stack.json").read_text()
    for secret in [*SECRETS.values(), "pw-url-4", "pw-url-5", "pw-url-6"]:
        assert secret not in text
    record = read_record(tmp_path)
    assert record.database_uri == "postgresql://render@db.internal:5432/aso_render"
    assert set(record.secrets_set) == {*SECRETS, "DATABASE_URL", "DAGSTER_PG_URL", "RENDER_EVENTS_DATABASE_URL"}

    restored, missing = record.settings_environment(environ)  # a shell set up like the stack
    assert restored == {k: v for k, v in environ.items()} and missing == []
    bare, missing = record.settings_environment({})
    assert "sk-minio-3" not in json.dumps(bare)
    assert set(missing) == {*SECRETS, "the password in DATABASE_URL", "the password in DAGSTER_PG_URL",
                            "the password in RENDER_EVENTS_DATABASE_URL"}


def test_a_record_counts_as_running_only_while_its_process_is_render_pipeline(tmp_path):
    environ = {"RENDER_PIPELINE_HOME": str(tmp_path)}
    settings = load_settings(environ)
    urls = DatabaseUrls(app=f"postgresql://postgres@/aso_render?host={tmp_path}", dagster="postgresql://x@h/dagster")
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "render-pipeline", "up"])
    try:
        record = new_record(settings, urls, "http://127.0.0.1:3000", environ=environ)
        write_record(tmp_path, record.__class__(**{**record.__dict__, "pid": stand_in.pid}))
        deadline = time.monotonic() + 10  # a loaded machine may take a moment to exec the child
        while running_stack(tmp_path) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running_stack(tmp_path) is not None
    finally:
        stand_in.kill()
        stand_in.wait()
    assert running_stack(tmp_path) is None


def test_psql_uris_for_sockets_and_hosts():
    assert psql_uri("host='/srv/pg data' dbname=aso_render user=postgres") == \
        "postgresql://postgres@/aso_render?host=/srv/pg%20data"
    assert psql_uri("postgresql://postgres:@/aso_render?host=/srv/pgdata") == "postgresql://postgres@/aso_render?host=/srv/pgdata"
    assert psql_uri("postgresql+psycopg2://u:p@h:5433/dagster") == "postgresql://u@h:5433/dagster"
    assert psql_uri("host=h port=5432 dbname=d user=u password=p") == "postgresql://u@h:5432/d"


def test_the_record_follows_the_supervised_processes_of_its_own_up_only(tmp_path):
    import os

    from render_pipeline.stack import record_children

    settings = load_settings({"RENDER_PIPELINE_HOME": str(tmp_path)})
    urls = DatabaseUrls(app=f"postgresql://postgres@/aso_render?host={tmp_path}", dagster="postgresql://x@h/dagster")
    record = new_record(settings, urls, "http://127.0.0.1:3000", environ={})
    write_record(tmp_path, record)
    assert read_record(tmp_path).children == {} and record.pid == os.getpid()
    record_children(tmp_path, {"web UI": 11, "daemon": 12})
    record_children(tmp_path, {"web UI": 11, "daemon": 13})  # the daemon was restarted
    assert read_record(tmp_path).children == {"web UI": 11, "daemon": 13}

    write_record(tmp_path, record.__class__(**{**record.__dict__, "pid": record.pid + 1}))  # another up's record
    record_children(tmp_path, {"daemon": 14})
    assert read_record(tmp_path).children == {}
