"""Every deployment file parses, and every alert and panel queries metrics the exporter exports."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import pytest
import yaml

from render_pipeline.metrics import METRIC_NAMES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXPORTED = set(METRIC_NAMES) | {f"render_duration_seconds_{s}" for s in ("bucket", "sum", "count")} | {"up"}
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "clamp_min", "predict_linear", "and", "or",
                "le", "status", "style", "prefix", "dependency", "job", "changes", "without", "on", "bool"}
IDENTIFIER = re.compile(r"(?<![\w\"'.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w\"'])")


def _metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that are not functions, keywords, labels or values."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_durations = re.sub(r"\[[^\]]*\]", "", without_strings)
    return {word for word in IDENTIFIER.findall(without_durations)
            if word not in PROMQL_WORDS and not re.fullmatch(r"\d+e\d+", word)}


def _yaml_files():
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_files_parse(path):
    assert list(yaml.safe_load_all(path.read_text()))


def test_alert_rules_cover_the_old_alerts_with_exported_metrics():
    rules = [rule for group in yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"]
             for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {"RenderHighFailureRate", "RenderSlowP90", "RenderQueueBacklog", "RenderDependencyDown",
            "RenderStorageFilling"} <= names
    for rule in rules:
        used = _metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= EXPORTED, (rule["alert"], used - EXPORTED)
        assert rule["labels"]["severity"] in ("warning", "critical")


def test_dashboard_panels_query_exported_metrics():
    dashboard = json.loads((DEPLOY / "grafana/render-pipeline-dashboard.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = _metric_names(target["expr"])
            assert names and names <= EXPORTED, (panel["title"], names - EXPORTED)
            used |= names
    assert set(METRIC_NAMES) - {"render_duration_seconds"} <= used


def test_production_instance_uses_k8s_launcher_and_the_pausable_queue():
    config = yaml.safe_load((DEPLOY / "k8s/dagster.yaml").read_text())
    assert config["run_launcher"] == {**config["run_launcher"], "module": "dagster_k8s", "class": "K8sRunLauncher"}
    assert (config["run_coordinator"]["module"], config["run_coordinator"]["class"]) == (
        "render_pipeline.run_queue", "PausableRunCoordinator")
    assert isinstance(config["run_coordinator"]["config"]["max_concurrent_runs"], int)
    assert config["storage"]["custom"]["class"] == "PooledPostgresStorage"
    assert config["run_monitoring"]["enabled"] is True


def test_helm_values_deploy_this_code_location():
    values = yaml.safe_load((DEPLOY / "helm/values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "render_pipeline.definitions"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "CustomRunCoordinator"
    assert coordinator["config"]["customRunCoordinator"]["class"] == "PausableRunCoordinator"
    assert values["postgresql"]["enabled"] is False


@pytest.mark.parametrize("unit", ["code-server", "webserver", "daemon", "metrics"])
def test_systemd_units(unit):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string((DEPLOY / f"systemd/render-pipeline-{unit}.service").read_text())
    assert parser["Service"]["EnvironmentFile"] == "/etc/render-pipeline/env"
    assert parser["Service"]["Restart"] == "always"
    assert parser["Install"]["WantedBy"] == "multi-user.target"
    exec_start = parser["Service"]["ExecStart"]
    if unit in ("webserver", "daemon"):
        assert "deploy/systemd/workspace.yaml" in exec_start
    if unit == "code-server":
        assert "-m render_pipeline.definitions" in exec_start and "-p 4266" in exec_start
