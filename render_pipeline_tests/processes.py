"""What the processes a test starts see: the caller's environment without the project's
settings (a command gets only what the test passes, never the caller's shell), a free port, and
the pid of a process that has exited, the live members of a process group."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

SETTING_PREFIXES = ("DATABASE_URL", "DB_", "DAGSTER_", "MINIO_", "LOCAL_STORE_ROOT", "RENDER_", "PG_BIN_DIR")


def clean_environ(environ: Mapping[str, str] = os.environ, *, also: tuple[str, ...] = ()) -> dict[str, str]:
    """``environ`` without the project's settings (nor the variables starting with ``also``)."""
    return {name: value for name, value in environ.items() if not name.startswith(SETTING_PREFIXES + also)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped: a run worker that died."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def process_group(pgid: int) -> list[int]:
    """The live members of a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            state, _ppid, group = (entry / "stat").read_text().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and int(group) == pgid and state != "Z":
            members.append(int(entry.name))
    return members
