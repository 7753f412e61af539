"""The built wheel works outside the repository: its `sql/` migrations and seeds and its
instance template come from the installed package, not from a checkout.

The wheel is built from a copy of the package's sources (a stale `build/` in the tree cannot
leak into it) and installed without dependencies into a fresh virtual environment that
borrows this environment's installed libraries through a `.pth` line (their directory is not
a site directory there, so the editable install's finder never runs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from dagster import DagsterInstance
from dagster._daemon.types import DaemonHeartbeat

from render_pipeline.resources.embedded_postgres import embedded_urls, stop_embedded_server
from render_pipeline.store import migrations
from render_pipeline_tests.processes import clean_environ

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "dagster.yaml", "workspace.yaml", "sql", "render_pipeline")


def _build_wheel(workdir: Path) -> Path:
    tree = workdir / "tree"
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(source, tree / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(workdir / "dist"), str(tree)],
                   check=True, capture_output=True, text=True, timeout=300)
    return next((workdir / "dist").glob("render_pipeline-*.whl"))


def _install(wheel: Path, venv: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "borrowed_libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    return venv / "bin"


def _heartbeats(dagster_home: Path) -> None:
    """What a running `dagster-daemon` writes, so `doctor` judges everything else."""
    instance = DagsterInstance.from_config(str(dagster_home))
    for daemon_type in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), daemon_type, None, None))
    instance.dispose()


def test_installed_wheel_upgrades_the_database_and_passes_doctor(tmp_path_factory, monkeypatch):
    workdir = tmp_path_factory.mktemp("wheel")
    bin_dir = _install(_build_wheel(workdir), workdir / "venv")
    outside_env = clean_environ(also=("PYTHON",))  # no source tree on the path
    installed = subprocess.run(
        [str(bin_dir / "python"), "-c",
         "import render_pipeline.package_data as p; print(p.__file__, p.SQL_DIR, p.INSTANCE_TEMPLATE, p.WORKSPACE_FILE)"],
        check=True, capture_output=True, text=True, cwd=workdir, env=outside_env).stdout.split()
    assert all(Path(path).is_relative_to(workdir / "venv") for path in installed), installed
    assert all(Path(path).exists() and not Path(path).is_symlink() for path in installed)  # copies, not links

    home = workdir / "home"
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copyfile(installed[2], dagster_home / "dagster.yaml")  # the template the package ships
    env = {**clean_environ(also=("PYTHON",)), "RENDER_PIPELINE_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    _, dagster_url = embedded_urls(home)  # the embedded server, running for `doctor` (which never starts it)
    try:
        upgrade = subprocess.run([str(bin_dir / "render-pipeline"), "db", "upgrade"], cwd=workdir, env=env,
                                 capture_output=True, text=True, timeout=120)
        assert upgrade.returncode == 0, upgrade.stderr
        assert f"applied {migrations.discover()[-1].path.stem}" in upgrade.stdout
        assert "seeded seed_styles.sql" in upgrade.stdout

        monkeypatch.setenv("DAGSTER_PG_URL", dagster_url)  # this process's instance on the same storage
        _heartbeats(dagster_home)
        doctor = subprocess.run([str(bin_dir / "render-pipeline"), "doctor", "--json"], cwd=workdir, env=env,
                                capture_output=True, text=True, timeout=120)
        checks = {check["name"]: check for check in json.loads(doctor.stdout)}
        assert doctor.returncode == 0, checks
        assert f"schema version {migrations.latest_version():03d}" in checks["database"]["detail"]
    finally:
        stop_embedded_server(home)
