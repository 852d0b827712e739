"""The phase-side API: what a phase's child process may tell the controller.

A child reports on the file descriptor named by `PHASEGATE_EVENTS_FD`, one JSON object per
line. Without that variable (a script run by hand) every call is a no-op, so the same code
runs inside and outside a session.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

EVENTS_FD_ENV = "PHASEGATE_EVENTS_FD"
# A phase that exits with this code asks the controller to stop the session (no retry).
EARLY_STOP_EXIT = 3


class ChildReporter:
    """Writes progress, metric, artifact, heartbeat and log events to the controller."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            raw = os.environ.get(EVENTS_FD_ENV)
            fd = int(raw) if raw and raw.isdigit() else None
        self._stream = os.fdopen(fd, "w", buffering=1, closefd=False) if fd is not None else None

    def _emit(self, **event: Any) -> None:
        if self._stream is None:
            return
        self._stream.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._stream.flush()

    def progress(self, done: int, total: int, step: str | None = None) -> None:
        """Report `done` of `total` units of work (optionally within a named step)."""
        self._emit(type="progress", done=done, total=total, step=step)

    def metric(self, name: str, value: float) -> None:
        """Report one numeric metric of this phase."""
        self._emit(type="metric", name=name, value=value)

    def artifact(self, path: str | Path) -> None:
        """Declare a finished output file; the controller records it with its sha256."""
        self._emit(type="artifact", path=str(Path(path).resolve()))

    def heartbeat(self) -> None:
        """Say the phase is alive while it produces nothing else."""
        self._emit(type="heartbeat")

    def early_stop(self, trigger: str, summary: str, evidence: dict[str, Any] | None = None) -> None:
        """Ask for an early stop (then exit with EARLY_STOP_EXIT): the session stops, no retry."""
        self._emit(type="stop", trigger=trigger, summary=summary, evidence=evidence or {})

    def log(self, message: str) -> None:
        """Send one human-readable line to the session's event stream."""
        self._emit(type="log", message=message)


_default: ChildReporter | None = None


def reporter() -> ChildReporter:
    """The process-wide reporter, created on first use."""
    global _default
    if _default is None:
        _default = ChildReporter()
    return _default
