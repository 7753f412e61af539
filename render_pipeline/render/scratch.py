"""A render run's scratch directory: validated upload bytes and the arrays passed from op to op.

A run renders up to dozens of uploads in every style; holding one stage's images for all of
them in memory grows with the batch (≈ 10 MB per render per stage).  Ops instead spill each
item as it is produced and load it when the next op reaches it, so a worker holds one item's
images at a time whatever the batch size.  Files are named by counters, never by user keys,
and the directory is deleted when the run ends (it lives under ``TMPDIR``).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr


@dataclass(frozen=True)
class SpilledArray:
    """An array written to the run's scratch directory.  ``shared``: other styles of the run
    read it too, so it stays until the run ends."""

    path: Path
    shared: bool = False

    def load(self) -> np.ndarray:
        """The array, read-only and memory-mapped: the next stage reads the file's cached
        pages directly instead of copying them into the worker first."""
        return np.load(self.path, mmap_mode="r", allow_pickle=False)

    def discard(self) -> None:
        if not self.shared:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class SpilledBytes:
    """A byte string (an encoded output) written to the run's scratch directory."""

    path: Path
    size: int

    def load(self) -> bytes:
        return self.path.read_bytes()

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


SCRATCH_PREFIX = "render-run-"
# Spills are written in pieces of this size: one write() per array into ext4's page cache
# took about twice the time and CPU of the same bytes in 1 MiB writes on this project's
# machines (one run's spills: 0.8-2.3 s against 0.7-0.9 s), and spills were the largest cost
# after the engine in a profile of benchmarks/dagster_bench.py part d.
WRITE_PIECE = 1 << 20
# A run lasts at most an hour (run monitoring's max_runtime_seconds); a directory untouched
# for this long belongs to a worker that was killed before it could delete it.
ABANDONED_AFTER_SECONDS = 6 * 3600


class RenderScratch(ConfigurableResource):
    """Per-run scratch space (one instance per run: render runs use the in-process executor)."""

    _root: Path | None = PrivateAttr(default=None)
    _counter: itertools.count = PrivateAttr(default_factory=itertools.count)
    _shared: dict[tuple, SpilledArray] = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        remove_abandoned(Path(tempfile.gettempdir()))
        run_id = context.run.run_id if context.run else "no-run"
        self._root = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{run_id[:8]}-"))

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    @property
    def root(self) -> Path:
        if self._root is None:  # used outside a run (a direct invocation in a test)
            self._root = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
        return self._root

    def _path(self, suffix: str) -> Path:
        return self.root / f"{next(self._counter):08d}{suffix}"

    def spill(self, array: np.ndarray) -> SpilledArray:
        """``array`` as an ``.npy`` file, which ``SpilledArray.load`` memory-maps."""
        path = self._path(".npy")
        array = np.ascontiguousarray(array)
        with path.open("wb") as file:
            np.lib.format.write_array_header_1_0(file, np.lib.format.header_data_from_array_1_0(array))
            _write_in_pieces(file, memoryview(array).cast("B"))
        return SpilledArray(path)

    def spill_bytes(self, data: bytes) -> SpilledBytes:
        path = self._path(".bin")
        _write_file(path, data)
        return SpilledBytes(path, len(data))

    # Validated sources: the uploads step stores the bytes it validated, and every style's
    # decode reads them from here instead of fetching (and hashing) the object again.

    def keep_source(self, asset_id: uuid.UUID, data: bytes) -> None:
        _write_file(self.root / f"source-{asset_id.hex}", data)

    def source(self, asset_id: uuid.UUID) -> bytes | None:
        path = self.root / f"source-{asset_id.hex}"
        return path.read_bytes() if path.exists() else None

    # Decoded sources, shared by the styles that decode the same way (colour or grey, at the
    # same draft scale), so a source is decoded once per distinct decode, not once per style;
    # likewise the image fitted to a preset from such a decode, which the three colour styles
    # all quantize.

    def decoded(self, key: tuple) -> SpilledArray | None:
        return self._shared.get(("decoded", *key))

    def keep_decoded(self, key: tuple, array: np.ndarray) -> SpilledArray:
        return self._keep_shared(("decoded", *key), array)

    def fitted(self, key: tuple) -> SpilledArray | None:
        return self._shared.get(("fitted", *key))

    def keep_fitted(self, key: tuple, array: np.ndarray) -> SpilledArray:
        return self._keep_shared(("fitted", *key), array)

    def _keep_shared(self, key: tuple, array: np.ndarray) -> SpilledArray:
        spilled = self._shared[key] = SpilledArray(self.spill(array).path, shared=True)
        return spilled


def _write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as file:
        _write_in_pieces(file, memoryview(data))


def _write_in_pieces(file: BinaryIO, data: memoryview) -> None:
    for start in range(0, len(data), WRITE_PIECE):
        file.write(data[start : start + WRITE_PIECE])


def remove_abandoned(parent: Path, *, now: float | None = None) -> list[Path]:
    """Delete scratch directories under ``parent`` that no run has touched for
    ABANDONED_AFTER_SECONDS (a killed worker never tears its directory down)."""
    cutoff = (now if now is not None else time.time()) - ABANDONED_AFTER_SECONDS
    removed = []
    for path in parent.glob(f"{SCRATCH_PREFIX}*"):
        try:
            if path.is_dir() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except FileNotFoundError:  # another run's sweep got there first
            continue
    return removed
