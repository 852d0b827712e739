"""A content digest of a repository tree (`.git/` included: hooks and config run code), to prove a reviewer left it untouched."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from phasegate.floor.reading import open_regular

_CHUNK = 1024 * 1024


def _relative_excludes(root: Path, exclude: Iterable[str]) -> set[str]:
    """Excluded paths as POSIX paths relative to `root` (absolute ones outside root dropped)."""
    rels: set[str] = set()
    for item in exclude:
        path = Path(item)
        if path.is_absolute():
            try:
                path = path.resolve().relative_to(root)
            except ValueError:
                continue
        rel = path.as_posix().strip("/")
        if rel and rel != ".":
            rels.add(rel)
    return rels


def file_digest(path: Path) -> str:
    """sha256 of one file's bytes, or a marker naming why it could not be read (a FIFO is never opened to wait)."""
    digest = hashlib.sha256()
    try:
        with os.fdopen(open_regular(path), "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        return f"unreadable:{exc.strerror or type(exc).__name__}"
    return digest.hexdigest()


def _entries(root: Path, excluded: set[str]) -> Iterable[str]:
    """One line per directory, file and symlink under `root`, sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        kept = []
        for name in sorted(dirnames):
            rel = prefix + name
            if rel in excluded:
                continue
            if (base / name).is_symlink():
                yield f"L {rel} -> {os.readlink(base / name)}"
                continue
            kept.append(name)
            yield f"D {rel}"
        dirnames[:] = kept
        for name in sorted(filenames):
            rel = prefix + name
            if rel in excluded:
                continue
            path = base / name
            if path.is_symlink():
                yield f"L {rel} -> {os.readlink(path)}"
            else:
                yield f"F {rel} {file_digest(path)}"


def tree_digest(root: Path, exclude: Iterable[str] = ()) -> str:
    """sha256 over every path and file content under `root`, `.git/` included, `exclude` left out."""
    root = Path(root).resolve()
    digest = hashlib.sha256()
    for entry in _entries(root, _relative_excludes(root, exclude)):
        digest.update(entry.encode("utf-8", errors="surrogateescape") + b"\0")
    return digest.hexdigest()
