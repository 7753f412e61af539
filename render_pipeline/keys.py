"""Deterministic names: object keys ↔ partition keys ↔ row ids.

Everything that identifies an upload or a render is derived from the upload's object key, so a
retry, a duplicate run or a re-registration always lands on the same rows and objects.
"""

from __future__ import annotations

import hashlib
import uuid

UPLOADS_PREFIX = "uploads/"
RENDERS_PREFIX = "renders/"
MAX_PARTITION_KEY_CHARS = 512
_NAMESPACE = uuid.UUID("6f1c4d1e-3b7a-5c55-9d0e-72656e646572")


class InvalidUploadKey(ValueError):
    """An object under uploads/ whose key cannot become a partition; the message says why."""


def partition_key_for(object_key: str) -> str:
    """``uploads/{asset_id}/{filename}`` → ``{asset_id}/{filename}``, or InvalidUploadKey."""
    if not object_key.startswith(UPLOADS_PREFIX):
        raise InvalidUploadKey(f"not under {UPLOADS_PREFIX}")
    rest = object_key[len(UPLOADS_PREFIX) :]
    if storable_key(rest) != rest:
        raise InvalidUploadKey("key is not valid UTF-8")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rest):
        raise InvalidUploadKey("key contains control characters")
    if "/" not in rest:
        raise InvalidUploadKey("key has no {asset_id}/ folder: expected uploads/{asset_id}/{filename}")
    segments = rest.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidUploadKey("key has an empty, '.' or '..' path segment")
    if len(segments) > 2:
        raise InvalidUploadKey("key is nested deeper than uploads/{asset_id}/{filename}")
    if "..." in rest:  # Dagster reserves '...' for partition ranges
        raise InvalidUploadKey("key contains '...', which partition ranges reserve")
    if "\\" in rest:
        raise InvalidUploadKey("key contains a backslash")
    if rest != rest.strip() or any(s != s.strip() for s in segments):
        raise InvalidUploadKey("key has leading or trailing whitespace in a segment")
    if len(rest) > MAX_PARTITION_KEY_CHARS:
        raise InvalidUploadKey(f"key is longer than {MAX_PARTITION_KEY_CHARS} characters")
    return rest


def storable_key(key: str) -> str:
    """``key`` as valid UTF-8 text for the database (undecodable bytes shown as escapes)."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def object_key_for(partition_key: str) -> str:
    return UPLOADS_PREFIX + partition_key


def asset_id_for(object_key: str) -> uuid.UUID:
    """The `assets.id` of an upload object (valid key or not).

    Local file names need not be UTF-8 (they arrive with surrogate escapes), so the id is
    derived from the key as stored; for every UTF-8 key that is the key itself."""
    return uuid.uuid5(_NAMESPACE, "asset:" + storable_key(object_key))


def render_id_for(asset_id: uuid.UUID, style_id: str, preset_id: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"render:{asset_id}:{style_id}:{preset_id}")


def render_object_keys(render_id: uuid.UUID) -> tuple[str, str]:
    """(output key, preview key) of a render."""
    return f"{RENDERS_PREFIX}{render_id}/output.png", f"{RENDERS_PREFIX}{render_id}/preview.jpg"


def short_hash(text: str) -> str:
    """A stable, bounded-length token for run keys and tags built from untrusted keys."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:24]
