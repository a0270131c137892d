"""File names and paths for the files plugin: a sender's file name made safe to write, a
path checked to stay inside the agent's working directory, sizes for people."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

MAX_NAME = 100  # characters of a cleaned name, its extension kept
MAX_NAME_BYTES = 200  # and its UTF-8 bytes, within every file system's 255
MAX_EXTENSION = 16
FALLBACK = "file"


def clean_name(name: str) -> str:
    """``name`` as a plain file name: its last path component only, no control or NUL
    characters, no leading dots or spaces, at most ``MAX_NAME`` characters with the
    extension kept; "file" when nothing is left."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    base = base.lstrip(". \t").rstrip(" ")
    if not base:
        return FALLBACK
    stem, ext = os.path.splitext(base)
    if len(ext) > MAX_EXTENSION or not stem:
        stem, ext = base, ""
    stem = stem[:MAX_NAME - len(ext)]
    while stem and len((stem + ext).encode("utf-8")) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return (stem + ext) if stem else FALLBACK


def unique_path(folder: Path, name: str, taken: set[str]) -> Path:
    """``folder/name``, or ``name-2``, ``name-3``… before the extension when that name is in
    ``taken`` or exists already; the name chosen is added to ``taken``."""
    stem, ext = os.path.splitext(name)
    candidate, number = name, 1
    while candidate in taken or os.path.lexists(folder / candidate):
        number += 1
        candidate = f"{stem}-{number}{ext}"
    taken.add(candidate)
    return folder / candidate


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``, resolved with its symlinks followed, is ``root`` or below it."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a NUL in it
        return False
    root = root.resolve()
    return resolved == root or root in resolved.parents


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes" if size != 1 else "1 byte"
    if size < 10 * 1024:
        return f"{size / 1024:.1f} KB"
    if size < 1024 * 1024:
        return f"{round(size / 1024)} KB"
    return f"{size / (1024 * 1024):.1f} MB"
