"""The embedded PostgreSQL stops even when its own user can no longer reach its data directory
(as root, pg_ctl runs as that user; pytest resets its base temp directory to 0700 whenever a
session starts, which happens under a running drill on a shared machine)."""

from __future__ import annotations

import os

import pytest

from render_pipeline.resources.embedded_postgres import embedded_server, embedded_server_running, stop_embedded_server


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root runs the server as another user")
def test_the_server_stops_when_its_user_lost_access_to_a_parent_directory(tmp_path):
    parent = tmp_path / "private"
    home = parent / "home"
    home.mkdir(parents=True)
    embedded_server(home)
    try:
        assert embedded_server_running(home)
        parent.chmod(0o700)  # what a new pytest session does to its base temp directory
        stop_embedded_server(home)
        assert not embedded_server_running(home)
    finally:
        parent.chmod(0o755)
        if embedded_server_running(home):
            stop_embedded_server(home)
