"""Tell phasegate how a phase is going, from any Python 3 and with the standard library only.

phasegate puts this file's folder first on a phase's PYTHONPATH (and its path in PHASEGATE_REPORTER),
so a phase run by the system `python3` can `import phasegate_reporter as pg` and call `pg.progress(1, 2)`.
Each call writes one JSON line to the file descriptor named by PHASEGATE_EVENTS_FD, the same line
`phasegate.floor.events.ChildReporter` writes; without that variable (a script run by hand) every
call is a no-op. Nothing here checks a value: a report must never crash the phase, the controller
checks every line and refuses a bad one with a warning.
"""

import json
import os
from pathlib import Path

EVENTS_FD_ENV = "PHASEGATE_EVENTS_FD"
# Exit with this code after `early_stop`: it is what stops the session (no retry, an incident report).
EARLY_STOP_EXIT = 3


class Reporter:
    """Writes progress, metric, artifact, heartbeat, log and stop events to the controller."""

    def __init__(self, fd=None):
        if fd is None:
            raw = os.environ.get(EVENTS_FD_ENV)
            fd = int(raw) if raw and raw.isdigit() else None
        self._stream = os.fdopen(fd, "w", buffering=1, closefd=False) if fd is not None else None

    def _emit(self, event):
        if self._stream is None:
            return
        # The field order and separators of phasegate's own encoder: both sides write the same line.
        self._stream.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._stream.flush()

    def progress(self, done, total, step=None):
        """Report `done` of `total` units of work (optionally within a named step)."""
        self._emit({"type": "progress", "done": done, "total": total, "step": step})

    def metric(self, name, value):
        """Report one numeric metric of this phase."""
        self._emit({"type": "metric", "name": name, "value": value})

    def artifact(self, path):
        """Declare a finished output file; the controller records it with its sha256."""
        self._emit({"type": "artifact", "path": str(Path(path).resolve())})

    def heartbeat(self):
        """Say the phase is alive while it produces nothing else."""
        self._emit({"type": "heartbeat"})

    def log(self, message):
        """Send one human-readable line to the session's event stream."""
        self._emit({"type": "log", "message": message})

    def early_stop(self, trigger, summary, evidence=None):
        """Ask for an early stop, then `sys.exit(EARLY_STOP_EXIT)`: the session stops, no retry."""
        self._emit({"type": "stop", "trigger": trigger, "summary": summary, "evidence": evidence or {}})


_default = None


def reporter():
    """The process-wide reporter, created on first use (so PHASEGATE_EVENTS_FD is read then)."""
    global _default
    if _default is None:
        _default = Reporter()
    return _default


def progress(done, total, step=None):
    """Report `done` of `total` units of work (optionally within a named step)."""
    reporter().progress(done, total, step)


def metric(name, value):
    """Report one numeric metric of this phase."""
    reporter().metric(name, value)


def artifact(path):
    """Declare a finished output file (inside the phase's artifact folder)."""
    reporter().artifact(path)


def heartbeat():
    """Say the phase is alive while it produces nothing else."""
    reporter().heartbeat()


def log(message):
    """Send one human-readable line to the session's event stream."""
    reporter().log(message)


def early_stop(trigger, summary, evidence=None):
    """Ask for an early stop, then `sys.exit(EARLY_STOP_EXIT)`: the session stops, no retry."""
    reporter().early_stop(trigger, summary, evidence)
