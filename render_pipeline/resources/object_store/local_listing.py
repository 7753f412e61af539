"""Keys of a local-directory store in S3's order, read from a cursor without walking the tree.

A directory's entries are sorted by the bytes of the key each stands for (a folder as
``name/``), so walking them in that order yields keys in UTF-8 byte order; a folder whose keys
all sort before the cursor is skipped unopened.  A page therefore opens the folders on the
way to the cursor and those it returns, not the other million uploads' folders.
"""

from __future__ import annotations

import bisect
import os
import stat
from collections.abc import Iterator
from pathlib import Path


def _encoded(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def keys_after(root: Path, prefix: str, after: str | None, limit: int, *, hidden: str) -> tuple[list[str], bool]:
    """Up to ``limit`` keys under ``prefix`` after ``after``, and whether more follow; the
    top-level folder ``hidden`` holds no keys."""
    keys: list[str] = []
    for key in _walk(str(root), "", _encoded(prefix), None if after is None else _encoded(after), hidden):
        if len(keys) == limit:
            return keys, True
        keys.append(key)
    return keys, False


def _walk(directory: str, rel: str, prefix: bytes, after: bytes | None, hidden: str) -> Iterator[str]:
    try:
        entries = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return  # a store not yet written to, or a folder deleted while it is listed: no keys
    names = sorted(_encoded(name) for name in entries if not (rel == "" and name == hidden))
    base = _encoded(rel)
    for name, is_dir in _in_key_order(directory, names, _first_candidate(names, base, after), len(names)):
        sort_key = base + name + (b"/" if is_dir else b"")
        text = name.decode("utf-8", "surrogateescape")
        if is_dir:
            relevant = sort_key.startswith(prefix) or prefix.startswith(sort_key)
            if not relevant or (after is not None and sort_key < after and not after.startswith(sort_key)):
                continue  # outside the prefix, or every key inside sorts before the cursor
            yield from _walk(os.path.join(directory, text), rel + text + "/", prefix, after, hidden)
        elif sort_key.startswith(prefix) and (after is None or sort_key > after):
            yield rel + text


def _in_key_order(directory: str, names: list[bytes], lo: int, hi: int) -> Iterator[tuple[bytes, bool]]:
    """``names[lo:hi]`` (sorted as names) in the order of their keys, with whether each is a
    folder: a folder's key ends in "/", so it sorts after the names that extend its own with a
    character below "/" (``a-b`` before the folder ``a``) — the block right after it."""
    index = lo
    while index < hi:
        name = names[index]
        kind = _kind(os.path.join(directory, name.decode("utf-8", "surrogateescape")))
        if kind == "dir":
            end = bisect.bisect_left(names, name + b"/", index + 1, hi)
            yield from _in_key_order(directory, names, index + 1, end)
            yield name, True
            index = end
            continue
        if kind == "file":
            yield name, False
        index += 1


def _kind(path: str) -> str | None:
    """"dir" to descend, "file" to list, None for neither (gone, or a symlink to a folder:
    like os.walk, neither listed nor followed)."""
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            return None if os.path.isdir(path) else "file"
    except OSError:
        return None
    return "dir" if stat.S_ISDIR(mode) else "file"


def _first_candidate(names: list[bytes], base: bytes, after: bytes | None) -> int:
    """Index of the first name that can hold keys after the cursor, found by bisection, so a
    page from the middle of a million folders reads none of those before it: the cursor's
    component at this level, or the shortest name that is a prefix of it (a folder ``a`` holds
    keys after ``a-b/…``)."""
    if after is None or not after.startswith(base):
        return 0
    component = after[len(base):].split(b"/", 1)[0]
    start = bisect.bisect_left(names, component)
    for length in range(1, len(component)):
        index = bisect.bisect_left(names, component[:length], 0, start)
        if index < start and names[index] == component[:length]:
            return index
    return start
