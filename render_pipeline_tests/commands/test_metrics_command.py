"""`render-pipeline metrics --port`: a real exporter process, scraped over HTTP like `curl`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

from render_pipeline.metrics import METRIC_NAMES
from render_pipeline_tests.processes import clean_environ, free_port


def _as_from_a_background_shell() -> None:
    """SIGINT and SIGTERM ignored, as a process started with `&` (or by some supervisors) inherits them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def test_exporter_process_serves_every_metric_and_stops_on_sigterm(database, database_url, tmp_path):
    port = free_port()
    env = {**clean_environ(), "DATABASE_URL": database_url, "RENDER_PIPELINE_HOME": str(tmp_path),
           "DAGSTER_HOME": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "render_pipeline.cli", "metrics", "--port", str(port), "--host", "127.0.0.1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_as_from_a_background_shell,
    )
    try:
        deadline, text = time.monotonic() + 60, None
        while text is None and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                    text = response.read().decode()
            except OSError:
                time.sleep(0.3)
        assert text is not None, process.stderr.read() if process.poll() is not None else "no answer"
    finally:
        process.terminate()
        try:
            stopped_with = process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            stopped_with = None
    assert stopped_with == 0, "the exporter did not stop on SIGTERM"
    for name in METRIC_NAMES:
        assert f"# TYPE {name}" in text or f"# TYPE {name.removesuffix('_total')} counter" in text, name
    assert 'health_check_status{dependency="database"} 1.0' in text
    assert 'health_check_status{dependency="object_store"} 1.0' in text
    assert 'health_check_status{dependency="dagster"} 1.0' in text
