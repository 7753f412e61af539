"""Render failures are recorded as one line per cause: the exception is rebuilt from its
stable parts, so the same failure on different objects, paths or runs reads the same."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from render_pipeline.render.failures import describe
from render_pipeline.resources.object_store import ObjectStoreError
from render_pipeline_tests.conftest import make_s3_store
from render_pipeline_tests.imaging.refusals import NOISE

KEYS = (
    "renders/0f/0f6c7d7e-4f5a-4a8e-9c1d-2b3e4f5a6b7c.png",
    "renders/9a/9a1b2c3d-0000-4000-8000-000000000001.png",
)


def _raised(action) -> BaseException:
    with pytest.raises(Exception) as caught:
        action()
    return caught.value


def _one_line_for_all(failures: list[BaseException]) -> str:
    lines = {describe(exc) for exc in failures}
    assert len(lines) == 1, lines
    [line] = lines
    assert not NOISE.search(line), line
    return line


def test_s3_errors_name_the_operation_and_code_not_the_key(s3_endpoint) -> None:
    store = make_s3_store(s3_endpoint, "no-such-bucket")
    puts = [_raised(lambda key=key: store.put(key, b"x")) for key in KEYS]
    gets = [_raised(lambda key=key: store.get(key)) for key in KEYS]
    assert all(isinstance(exc, ObjectStoreError) and exc.__cause__ is not None for exc in puts + gets)
    # The message groups (no key in it); the key travels beside it, for an operator's one line.
    assert [str(exc) for exc in puts] == ["S3 put failed: the bucket does not exist (check MINIO_BUCKET)"] * 2
    assert [exc.key for exc in puts + gets] == [*KEYS, *KEYS]
    assert puts[0].with_key() == f"{puts[0]} (object {KEYS[0]!r})"
    assert _one_line_for_all(puts) == "ObjectStoreError: S3 put failed: NoSuchBucket (check MINIO_BUCKET)"
    assert _one_line_for_all(gets) == "ObjectStoreError: S3 get failed: NoSuchBucket (check MINIO_BUCKET)"


def test_an_unreachable_store_is_one_line_without_its_url() -> None:
    store = make_s3_store("http://127.0.0.1:9", "bucket", max_attempts=1, connect_timeout=1)
    failures = [_raised(lambda key=key: store.get(key)) for key in KEYS]
    assert _one_line_for_all(failures) == "ObjectStoreError: S3 get failed: EndpointConnectionError"


def test_os_opencv_and_memory_errors_keep_only_their_stable_text(tmp_path) -> None:
    missing = [_raised(lambda name=name: (tmp_path / name / "x.png").read_bytes()) for name in ("a", "b")]
    assert _one_line_for_all(missing) == "FileNotFoundError: No such file or directory"
    empty = np.zeros((0, 0), np.uint8)
    resizes = [_raised(lambda size=size: cv2.resize(empty, size)) for size in ((4, 4), (9, 7))]
    assert _one_line_for_all(resizes) == "OpenCV error in resize: !ssize.empty()"
    allocations = [_raised(lambda n=n: np.empty((n, n))) for n in (10**8, 3 * 10**8)]
    assert _one_line_for_all(allocations) == "MemoryError: out of memory"


def test_unknown_exceptions_lose_addresses_paths_and_urls() -> None:
    failures = [
        ValueError(f"cannot use {object()!r} from {path} (see {url})")
        for path, url in (
            ("/tmp/run-1/a.png", "http://127.0.0.1:9000/b/k1"),
            ("/var/x/b.png", "https://s3/b/k2"),
        )
    ]
    assert _one_line_for_all(failures) == "ValueError: cannot use [object] from [path] (see [url])"
