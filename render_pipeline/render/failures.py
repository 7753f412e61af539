"""One stable line per failure cause for `renders.error_message`.

Failures are grouped by message, so an exception's text is rebuilt from its stable parts (its
type, the OS error text, the S3 operation and error code, the OpenCV function and assertion)
rather than copied: object keys, file paths, endpoint URLs, sizes and memory addresses vary
per item or per run and would split one cause into as many groups as there are renders.
"""

from __future__ import annotations

import re

import botocore.exceptions
import cv2

from render_pipeline.resources.object_store import ObjectStoreError, s3_error_code

_S3_OPERATIONS = {"GetObject": "get", "PutObject": "put", "HeadObject": "head", "DeleteObject": "delete",
                  "DeleteObjects": "delete", "ListObjectsV2": "list", "HeadBucket": "head bucket"}
_S3_HINTS = {code: " (check MINIO_ACCESS_KEY / MINIO_SECRET_KEY)"
             for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403")}
_S3_HINTS["NoSuchBucket"] = " (check MINIO_BUCKET)"
_NOISE = (  # only for exceptions nothing above knows: what varies per run or item, by shape
    (re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>"), "[object]"),
    (re.compile(r"\b0x[0-9a-fA-F]{5,}\b"), "[address]"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s()'\"]+"), "[url]"),
    (re.compile(r"(?<![\w.-])(?:[A-Za-z]:)?(?:[\\/][^\s()'\",\\/:]+){2,}[\\/]?"), "[path]"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "[id]"),
)


def describe(exc: BaseException) -> str:
    """``exc`` as one line that is the same for every occurrence of the same cause."""
    name = type(exc).__name__
    if isinstance(exc, ObjectStoreError) and exc.__cause__ is not None:
        return f"{name}: {_store_failure(exc, exc.__cause__)}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{name}: {exc.strerror}"  # without the file name
    if isinstance(exc, MemoryError):
        return f"{name}: out of memory"
    if isinstance(exc, cv2.error):
        return f"OpenCV error in {exc.func or 'an OpenCV call'}: {exc.err or 'assertion failed'}"
    text = one_line(str(exc))
    return f"{name}: {text}" if text else name


def _store_failure(exc: ObjectStoreError, cause: BaseException) -> str:
    """The S3 operation and error code, or the kind of connection failure, without the key."""
    if isinstance(cause, botocore.exceptions.ClientError):
        operation = _S3_OPERATIONS.get(cause.operation_name, cause.operation_name)
        code = cause.response.get("Error", {}).get("Code") or "error"
        return f"S3 {operation} failed: {s3_error_code(cause)}{_S3_HINTS.get(code, '')}"
    if isinstance(cause, botocore.exceptions.BotoCoreError):
        return str(exc)  # already the operation and the kind of failure, without the key or URL
    return describe(cause)


def one_line(text: str) -> str:
    """The first line of ``text`` without what varies per run or item (addresses, URLs,
    paths, ids): for error text from elsewhere, e.g. a Dagster step's error."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    for pattern, replacement in _NOISE:
        line = pattern.sub(replacement, line)
    return line[:300]
