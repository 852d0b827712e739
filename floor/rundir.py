"""The run folder's layout and the durable file writes every result goes through."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from phasegate.floor.errors import RunDirError


def utc_stamp(now: datetime) -> str:
    """A sortable UTC stamp for folder and file names."""
    return now.strftime("%Y%m%dT%H%M%SZ")


def resolved(path: Path) -> Path:
    """`path` made absolute with its links followed; RunDirError for a loop of links (pathlib raises RuntimeError)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "its symbolic links form a loop"
        raise RunDirError(f"{path}: cannot be used as a run folder ({reason}); pick another path") from None


class Placeholders(NamedTuple):
    """The `{name}` placeholders a session file's argv and gate paths may use, with one phase's values."""

    run_dir: Any
    artifacts: Any  # this phase's artifact folder
    phase: Any  # this phase's id
    session_dir: Any
    state: Any  # this phase's state folder, kept across its attempts (resumable work)


PLACEHOLDER_NAMES: tuple[str, ...] = Placeholders._fields
"""Every placeholder name, in the order the reference lists them."""


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder (see ARCHITECTURE.md, "Run directory")."""

    root: Path

    @property
    def spec(self) -> Path:
        """The session file frozen when the run was created (version 1 of its plan)."""
        return self.root / "session.toml"

    def plan(self, version: int) -> Path:
        """The frozen file of one version of the plan: session.toml, then session.v2.toml, … per amendment."""
        return self.spec if version <= 1 else self.root / f"session.v{version}.toml"

    @property
    def db(self) -> Path:
        return self.root / "state.db"

    @property
    def lock(self) -> Path:
        return self.root / ".controller.lock"

    @property
    def checkpoint(self) -> Path:
        return self.root / "CHECKPOINT.md"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def incidents(self) -> Path:
        return self.root / "incidents"

    @property
    def reviews(self) -> Path:
        return self.root / "reviews"

    def artifacts(self, phase_id: str) -> Path:
        return self.root / "artifacts" / phase_id

    def state(self, phase_id: str) -> Path:
        """A phase's state folder: unlike its artifact folder it survives a crash, a retry and a stop."""
        return self.root / "state" / phase_id

    def log(self, phase_id: str) -> Path:
        return self.root / "logs" / f"{phase_id}.log"

    @property
    def controller_log(self) -> Path:
        """The log of a controller started by the TUI (a phase id cannot start with "_", so no clash)."""
        return self.root / "logs" / "_controller.log"

    def review(self, gate_id: str, attempt: int) -> Path:
        """The folder of one reviewer call: prompt, output and meta."""
        return self.reviews / f"{gate_id}-{attempt}"

    def create_layout(self) -> None:
        """Make the folders a new run needs."""
        for sub in ("artifacts", "state", "logs", "checkpoints", "incidents", "reviews"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def require_existing(self) -> None:
        """Raise RunDirError unless this looks like a phasegate run folder."""
        try:
            is_run = self.root.is_dir(), self.db.is_file()
        except OSError as exc:  # a name too long, a loop of links: still the user's path, not a crash
            raise RunDirError(f"{self.root}: cannot be used as a run folder ({exc.strerror})") from None
        if not is_run[0]:
            raise RunDirError(f"{self.root}: no such run folder; `phasegate run SESSION` creates one")
        if not is_run[1]:
            raise RunDirError(f"{self.root}: not a phasegate run folder (no state.db)")


class ControllerLock:
    """An exclusive flock on the run folder: held by the one live controller, freed by the kernel when it dies."""

    def __init__(self, run_dir: RunDir) -> None:
        self._path = run_dir.lock
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another live process holds it."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go of the lock (also happens when the process exits)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def controller_is_live(run_dir: RunDir) -> bool:
    """True when some process holds the run's controller lock right now."""
    if not run_dir.lock.exists():
        return False
    probe = ControllerLock(run_dir)
    if probe.acquire():
        probe.release()
        return False
    return True
