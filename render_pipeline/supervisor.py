"""Keeps `render-pipeline up`'s long-running processes alive, and stops all of them in order.

Each child (the web UI, the daemon) runs in a session and process group of its own, so the
code servers, gRPC servers and run workers it starts are found by their group and stopped
with it: none of them outlives `up`.  A child that exits or hangs is restarted with backoff,
the reason logged.  Run workers are started by the daemon's gRPC server (Python
multiprocessing), so they sit in the daemon's group: when the daemon dies its group is left
to finish the runs it holds and is stopped once none is left (or when `up` stops).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

RUN_WORKER_MARK = b"--multiprocessing-fork"  # a Dagster run worker's command line (multiprocessing spawn)
GROUP_GRACE_SECONDS = 5.0  # from SIGTERM to SIGKILL for a process group
LEADER_STOP_SECONDS = 10.0  # for the daemon to stop after SIGTERM
HEALTHY_AFTER_SECONDS = 60.0  # a child up this long has its backoff reset
MAX_BACKOFF_SECONDS = 60.0
POLL_SECONDS = 1.0
HANG_CHECK_SECONDS = 5.0
PR_SET_PDEATHSIG = 1  # prctl(2)


def log(message: str) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000")
    print(f"{stamp} - render-pipeline up - {message}", flush=True)


@dataclass
class Child:
    """One supervised command.  ``hang_reason`` (if any) says why a live process counts as hung."""

    name: str
    command: list[str]
    runs_work: bool = False  # its group holds run workers: stopped only after they finish
    hang_reason: Callable[[Child], str | None] | None = None
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    failures_in_a_row: int = 0
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


@dataclass
class Supervisor:
    children: list[Child]  # in start order; stopped in reverse
    env: dict[str, str]
    cwd: Path
    on_change: Callable[[dict[str, int]], None] = lambda pids: None  # called with the live pids
    draining: set[int] = field(default_factory=set)  # groups of dead children still holding runs
    _last_hang_check: float = 0.0

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def watch(self, stop: threading.Event) -> None:
        """Keep every child up until ``stop`` is set."""
        while not stop.wait(POLL_SECONDS):
            check_hangs = time.monotonic() - self._last_hang_check >= HANG_CHECK_SECONDS
            if check_hangs:
                self._last_hang_check = time.monotonic()
            for child in self.children:
                self._tend(child, check_hangs)
            self._retire_drained_groups()

    def stop(self, run_grace: float, hurry: threading.Event, after_runs: Callable[[list[bytes]], None]) -> None:
        """The run-launching children first (their leader only, so runs in progress go on), runs
        given ``run_grace`` seconds (less if ``hurry`` is set) before their groups are
        stopped, then ``after_runs`` called with the command lines of the processes stopped
        with them, then the other children, last started first."""
        working = [child for child in self.children if child.runs_work]
        for child in working:
            if child.process is not None:
                _stop_leader(child, LEADER_STOP_SECONDS)
                log(f"{child.name} stopped (no new runs start)")
        groups = self.draining | {child.pid for child in working if child.pid is not None}
        _wait_for_runs(groups, run_grace, hurry)
        command_lines = [line for group in groups for line in _command_lines(group)]
        for group in groups:
            terminate_group(group)
        self.draining.clear()
        try:
            after_runs(command_lines)
        except Exception as exc:  # the rest must still be stopped
            log(f"could not mark the interrupted runs failed ({type(exc).__name__}: {exc}); the next start does")
        for child in reversed(self.children):
            if not child.runs_work and child.process is not None:
                terminate_group(child.process.pid)
                child.process.wait()
                log(f"{child.name} stopped")

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(child.command, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=_default_signals)
        child.started_at, child.restart_at = time.time(), None
        log(f"{child.name} started (pid {child.process.pid})")
        self.on_change(self._pids())

    def _tend(self, child: Child, check_hangs: bool) -> None:
        if child.restart_at is not None:
            if time.monotonic() >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
            return
        process = child.process
        returncode = process.poll()
        reason = _exit_reason(returncode) if returncode is not None else None
        if reason is None and check_hangs and child.hang_reason is not None:
            reason = child.hang_reason(child)
            if reason is not None:
                process.kill()  # SIGKILL: a hung (even stopped) process cannot be asked to stop
                process.wait()
        if reason is None:
            return
        self._retire_group(child, process.pid)
        healthy = time.time() - child.started_at >= HEALTHY_AFTER_SECONDS
        child.failures_in_a_row = 1 if healthy else child.failures_in_a_row + 1
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (child.failures_in_a_row - 1))
        child.restart_at = time.monotonic() + delay
        log(f"{child.name} (pid {process.pid}) {reason}: restarting it in {delay:g} s "
            f"(restart {child.restarts + 1})")

    def _retire_group(self, child: Child, group: int) -> None:
        """A dead child's group: left to finish the runs it holds, otherwise stopped now."""
        if child.runs_work and run_workers(group):
            self.draining.add(group)
            log(f"{child.name}'s run workers (group {group}) go on; their group is stopped once they finish")
        else:
            terminate_group(group)

    def _retire_drained_groups(self) -> None:
        for group in [group for group in self.draining if not run_workers(group)]:
            terminate_group(group)
            self.draining.discard(group)

    def _pids(self) -> dict[str, int]:
        return {child.name: child.pid for child in self.children if child.pid is not None}


def _default_signals() -> None:
    """In the child, before exec: a shell that started `up` in the background ignores SIGINT,
    and Dagster maps SIGTERM to the SIGINT handler, so both are reset.  On Linux the child
    also gets SIGTERM if `up` itself dies (even by SIGKILL), so it does not run on alone."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


def _stop_leader(child: Child, timeout: float) -> None:
    process = child.process
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        log(f"{child.name} (pid {process.pid}) still running {timeout:g} s after SIGTERM: SIGKILL")
        process.kill()
        process.wait()


def _wait_for_runs(groups: set[int], grace: float, hurry: threading.Event) -> None:
    deadline = time.monotonic() + grace
    workers = [pid for group in groups for pid in run_workers(group)]
    if workers:
        log(f"waiting up to {grace:g} s for {len(workers)} run worker(s) to finish (Ctrl-C again: stop them now)")
    while workers and time.monotonic() < deadline and not hurry.wait(POLL_SECONDS):
        workers = [pid for group in groups for pid in run_workers(group)]
    if workers:
        log(f"stopping {len(workers)} run worker(s) still running; their runs are marked failed")


def group_members(group: int) -> list[int]:
    """The live processes of a process group (zombies excluded), read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _ppid, pgrp = (entry / "stat").read_text().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(pgrp) == group and state != "Z":
            members.append(int(entry.name))
    return members


def _command_lines(group: int) -> list[bytes]:
    """Each member's command line, its arguments separated by NUL bytes."""
    lines = []
    for pid in group_members(group):
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes())
        except OSError:
            continue  # gone meanwhile
    return lines


def run_workers(group: int) -> list[int]:
    workers = []
    for pid in group_members(group):
        try:
            if RUN_WORKER_MARK in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
        except OSError:
            continue
    return workers


def terminate_group(group: int, grace: float = GROUP_GRACE_SECONDS) -> None:
    """SIGTERM to the whole group, SIGKILL to whatever is left after ``grace`` seconds."""
    for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(group, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while group_members(group):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            return
    log(f"process group {group} still has {group_members(group)} after SIGKILL")
