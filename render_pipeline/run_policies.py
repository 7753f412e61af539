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


MAX_BACKOFF_SECONDS = 8.0


def with_backoff(
    call: Callable[[], T],
    *,
    retries: int = STORAGE_RETRY.max_retries,
    delay: float = 0.5,
    budget_seconds: float = 0.0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """``call()``, retried on ``retry_on`` with STORAGE_RETRY's schedule (0.5, 1, 2, 4 s, …
    doubling up to 8 s, ±50 %): at least ``retries`` times, and on while less than
    ``budget_seconds`` have passed since the first failure, so an outage of that long is
    ridden out.  For work inside a batch step, where one failing object must fail only its
    own renders instead of re-running the whole step."""
    first_failure: float | None = None
    attempt = 0
    while True:
        try:
            return call()
        except retry_on:
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            if attempt >= retries and now - first_failure >= budget_seconds:
                raise
        time.sleep(min(delay * 2**attempt, MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.5))
        attempt += 1
