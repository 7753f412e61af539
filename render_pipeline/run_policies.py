"""Run policies both slices share: run kinds, retries, the render pool, and in-op backoff for
storage."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from dagster import Backoff, Jitter, RetryPolicy

T = TypeVar("T")

# The tag the instance's concurrency limits (dagster.yaml, deploy/) and history retention
# select runs by.
RUN_KIND_TAG = "render_pipeline/kind"
RENDER_KIND = {RUN_KIND_TAG: "render"}
MAINTENANCE_KIND = {RUN_KIND_TAG: "maintenance"}
RENDER_POOL = "render"
# Storage and database steps ride out MinIO timeouts and brief outages (old runbook: retry
# with exponential backoff).  Compute steps are deterministic: retrying them cannot help.
STORAGE_RETRY = RetryPolicy(max_retries=4, delay=0.5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def with_backoff(call: Callable[[], T], *, retries: int = STORAGE_RETRY.max_retries, delay: float = 0.5) -> T:
    """``call()``, retried on any exception with STORAGE_RETRY's schedule (0.5, 1, 2, 4 s,
    ±50 %).  For work inside a batch step, where one failing object must fail only its own
    renders instead of re-running the whole step."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception:
            if attempt == retries:
                raise
            time.sleep(delay * 2**attempt * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")
