"""The production instance files load as Dagster instance configuration, validated by Dagster.

Each file passes Dagster's instance schema (`dagster_instance_config`); its run launcher and
storage pass their classes' own config schemas; and the file builds a real `DagsterInstance`
whose coordinator (with the pause switch), concurrency, run monitoring and retries are the file's.  Only the storage (a
throwaway SQLite) and, for Kubernetes, the launcher (no cluster here) are swapped for that
last step: everything else is read from the file as shipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import class_from_code_pointer

from render_pipeline.run_queue import PausableRunCoordinator, PauseRecord, write_pause

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# What the pods' ConfigMap and Secret provide; the values here are placeholders, not secrets.
INSTANCE_ENV = {"DAGSTER_PG_HOST": "postgres.render-pipeline.svc", "DAGSTER_PG_USER": "dagster",
                "DAGSTER_PG_PASSWORD": "placeholder", "DAGSTER_PG_URL": "postgresql+psycopg2://dagster@db/dagster"}


@pytest.fixture(autouse=True)
def _instance_env(monkeypatch):
    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)


def _validated_by_dagster(path: Path, directory: Path) -> Mapping:
    directory.mkdir(exist_ok=True)
    (directory / "dagster.yaml").write_text(path.read_text())
    config, _ = dagster_instance_config(str(directory))
    return config


def _class_config(section: Mapping) -> dict:
    """A configurable-class section's config, processed by that class's own config schema."""
    klass = class_from_code_pointer(section["module"], section["class"])
    result = process_config(resolve_to_config_type(klass.config_type()), section.get("config") or {})
    assert result.success, [error.message for error in result.errors]
    return result.value


def _instance_from(path: Path, directory: Path, **replaced: object) -> DagsterInstance:
    config = yaml.safe_load(path.read_text())
    config.update(storage={"sqlite": {"base_dir": str(directory / "storage")}}, **replaced)
    directory.mkdir(exist_ok=True)
    (directory / "dagster.yaml").write_text(yaml.safe_dump(config))
    return DagsterInstance.from_config(str(directory))


def _assert_production_queue(instance: DagsterInstance, file_config: Mapping) -> None:
    coordinator = instance.run_coordinator
    assert isinstance(coordinator, PausableRunCoordinator)
    concurrency = instance.get_concurrency_config()
    limit = file_config["run_coordinator"]["config"]["max_concurrent_runs"]
    assert concurrency.run_queue_config.max_concurrent_runs == limit
    assert concurrency.pool_config.default_pool_limit == file_config["concurrency"]["pools"]["default_limit"]
    assert concurrency.run_queue_config.tag_concurrency_limits == [
        {"key": "render_pipeline/kind", "value": "maintenance", "limit": 2}]
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_max_runtime_seconds == file_config["run_monitoring"]["max_runtime_seconds"] == 3600
    assert instance.run_monitoring_start_timeout_seconds == file_config["run_monitoring"]["start_timeout_seconds"]
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
    write_pause(instance, PauseRecord(since=0.0, reason="deploy"))  # `render-pipeline pause` works here too
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 0
    write_pause(instance, None)
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == limit


def test_k8s_instance_is_valid_dagster_configuration(tmp_path):
    path = DEPLOY / "k8s/dagster.yaml"
    config = _validated_by_dagster(path, tmp_path / "as_shipped")
    launcher = _class_config(config["run_launcher"])
    # Every run pod gets the instance, the app's environment and its secrets by reference.
    assert launcher["instance_config_map"] and launcher["dagster_home"]
    assert launcher["env_config_maps"] == ["render-pipeline-env"]
    assert launcher["env_secrets"] == ["render-pipeline-secrets"]
    assert "DAGSTER_EVENT_BATCH_SIZE=64" in launcher["env_vars"]
    container = launcher["run_k8s_config"]["container_config"]
    resources = container["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == "1"
    # The run's scratch directory is a pod-local volume the node reserves room for.
    assert {"name": "TMPDIR", "value": "/scratch"} in container["env"]
    assert container["volume_mounts"] == [{"name": "render-scratch", "mount_path": "/scratch"}]
    volumes = launcher["run_k8s_config"]["pod_spec_config"]["volumes"]
    assert [v["name"] for v in volumes if "empty_dir" in v] == ["render-scratch"]
    assert resources["requests"]["ephemeral-storage"]
    storage = _class_config(config["storage"]["custom"])
    assert storage["postgres_db"]["password"] == INSTANCE_ENV["DAGSTER_PG_PASSWORD"]  # from the env, not the file
    assert "placeholder" not in path.read_text()

    no_cluster = {"module": "dagster.core.launcher", "class": "DefaultRunLauncher"}
    instance = _instance_from(path, tmp_path / "built", run_launcher=no_cluster)
    _assert_production_queue(instance, config)


def test_docker_instance_is_valid_dagster_configuration(tmp_path):
    path = DEPLOY / "docker/dagster.yaml"
    config = _validated_by_dagster(path, tmp_path / "as_shipped")
    launcher = _class_config(config["run_launcher"])
    assert launcher["image"] and launcher["network"]
    forwarded = set(launcher["env_vars"])
    assert {"DAGSTER_PG_URL", "DB_PASSWORD", "MINIO_SECRET_KEY"} <= forwarded  # names only: values stay in the env
    assert "DAGSTER_EVENT_BATCH_SIZE=64" in forwarded
    _class_config(config["storage"]["custom"])

    instance = _instance_from(path, tmp_path / "built")  # DockerRunLauncher needs no daemon to load
    assert type(instance.run_launcher).__name__ == "DockerRunLauncher"
    _assert_production_queue(instance, config)


def test_no_concurrency_runs_block_overrides_the_pause_switch():
    """`concurrency.runs` limits would replace the coordinator's (and so its 0 while paused)."""
    for name in ("k8s/dagster.yaml", "docker/dagster.yaml"):
        config = yaml.safe_load((DEPLOY / name).read_text())
        assert "runs" not in config.get("concurrency", {}), name
    root = yaml.safe_load((DEPLOY.parent / "dagster.yaml").read_text())
    assert "runs" not in root.get("concurrency", {})
