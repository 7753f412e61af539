"""Files the package carries beside its code: the SQL schema and seeds, the instance template
and the workspace file.

The repository's top-level `sql/`, `dagster.yaml` and `workspace.yaml` are the source.
`render_pipeline/sql` and `render_pipeline/*.yaml` link to them, so an editable install reads
them in place and a built wheel holds copies at the same place in the package: code finds
them here in both.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SQL_DIR = PACKAGE_DIR / "sql"
INSTANCE_TEMPLATE = PACKAGE_DIR / "dagster.yaml"  # the Dagster instance for DAGSTER_HOME
WORKSPACE_FILE = PACKAGE_DIR / "workspace.yaml"  # the code location the web UI and daemon load
