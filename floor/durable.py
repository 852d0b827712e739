"""Durable file writes, shared by the controller, the built-in phases and the reviewers.

Part of the phase-side API (with `session.child`): a built-in phase may import it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from phasegate.floor.faults import crash_point, disk_full_fault


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write a file so that readers see the old content or the new, never a half (temp, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            disk_full_fault(handle)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        crash_point("before_rename")
        os.replace(tmp, path)
        crash_point("after_rename")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Text form of atomic_write_bytes (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def sha256_file(path: Path) -> str:
    """Stream a file's sha256 (weights can be many GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
