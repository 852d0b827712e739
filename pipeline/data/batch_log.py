"""A shard's finished batches, one JSON line each, appended durably so a killed worker loses at most one batch.

A line is `{"batch": b, "rows": [...]}`, appended whole, flushed and fsynced before the next batch starts.
On reading, only the unbroken run of lines for batches 0, 1, 2, ... counts; whatever follows (a line torn
by a crash mid-write) is cut off, so the next append starts on a clean line.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

from phasegate.floor.durable import fsync_dir


class BatchLog:
    """The append-only log of one shard's finished batches; held under an exclusive lock while open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> BatchLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._handle = open(self.path, "a+b")  # closed in __exit__
        if created:
            fsync_dir(self.path.parent)  # the log's name must survive power loss as much as its lines
        # A worker of an earlier attempt that is still dying may hold it: wait, then read what it left.
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()  # also lets go of the lock
            self._handle = None

    def finished(self) -> list[list[dict[str, Any]]]:
        """The rows of every batch written so far, in batch order; a torn or stray tail is cut off."""
        handle = self._open()
        handle.seek(0)
        data = handle.read()
        batches: list[list[dict[str, Any]]] = []
        kept = 0
        for line in data.splitlines(keepends=True):
            entry = _entry(line)
            if entry is None or entry["batch"] != len(batches):
                break
            batches.append(entry["rows"])
            kept += len(line)
        if kept < len(data):
            handle.truncate(kept)
            os.fsync(handle.fileno())
        return batches

    def append(self, batch: int, rows: list[dict[str, Any]]) -> None:
        """Add one finished batch, durably, before the next one starts."""
        handle = self._open()
        line = json.dumps({"batch": batch, "rows": rows}, sort_keys=True, default=str) + "\n"
        handle.write(line.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())

    def _open(self) -> IO[bytes]:
        if self._handle is None:
            raise RuntimeError("use a BatchLog inside `with`")  # a programming error, never user input
        return self._handle


def _entry(line: bytes) -> dict[str, Any] | None:
    """One complete, well-formed line of the log, or None."""
    if not line.endswith(b"\n"):
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    ok = isinstance(entry, dict) and isinstance(entry.get("batch"), int) and isinstance(entry.get("rows"), list)
    return entry if ok else None
