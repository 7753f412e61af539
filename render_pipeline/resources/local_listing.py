"""Keys of a local-directory store in S3's order, read from a cursor without walking the tree.

A directory's entries are sorted by the bytes of the key each stands for (a folder as
``name/``), so walking them in that order yields keys in UTF-8 byte order; a folder whose keys
all sort before the cursor is skipped unopened.  A page therefore opens the folders on the
way to the cursor and those it returns, not the other million uploads' folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

def _encoded(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def keys_after(root: Path, prefix: str, after: str | None, limit: int, *, hidden: str) -> tuple[list[str], bool]:
    """Up to ``limit`` keys under ``prefix`` after ``after``, and whether more follow; the
    top-level folder ``hidden`` holds no keys."""
    keys: list[str] = []
    for key in _walk(root, "", _encoded(prefix), None if after is None else _encoded(after), hidden):
        if len(keys) == limit:
            return keys, True
        keys.append(key)
    return keys, False


def _walk(directory: Path, rel: str, prefix: bytes, after: bytes | None, hidden: str) -> Iterator[str]:
    for sort_key, name, is_dir in _sorted_entries(directory, rel, hidden):
        if is_dir:
            relevant = sort_key.startswith(prefix) or prefix.startswith(sort_key)
            if not relevant or (after is not None and sort_key < after and not after.startswith(sort_key)):
                continue  # outside the prefix, or every key inside sorts before the cursor
            yield from _walk(directory / name, rel + name + "/", prefix, after, hidden)
        elif sort_key.startswith(prefix) and (after is None or sort_key > after):
            yield rel + name


def _sorted_entries(directory: Path, rel: str, hidden: str) -> list[tuple[bytes, str, bool]]:
    """(sort key, name, is a folder to descend) of each entry; like os.walk, a symlink to a
    folder is neither listed nor followed."""
    entries = []
    try:
        with os.scandir(directory) as scan:
            for entry in scan:
                if rel == "" and entry.name == hidden:
                    continue
                try:
                    is_dir = entry.is_dir()
                    if is_dir and entry.is_symlink():
                        continue
                except OSError:
                    continue
                key = rel + entry.name + ("/" if is_dir else "")
                entries.append((_encoded(key), entry.name, is_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    entries.sort()
    return entries
