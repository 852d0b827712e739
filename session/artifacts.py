"""A phase's artifacts: regular files inside its artifact folder, and still what the journal says on resume."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from phasegate.floor.durable import sha256_file
from phasegate.floor.errors import InvalidInput
from phasegate.floor.rundir import RunDir
from phasegate.floor.states import PhaseState, SessionState
from phasegate.journal.snapshot import ArtifactView, take_snapshot
from phasegate.session.runs import OpenRun

# How many bad artifacts a message names (the rest are counted): a message is read, not scrolled.
NAMED = 5


class ArtifactsChanged(InvalidInput):
    """A completed phase's artifact was deleted or changed after the journal recorded its sha256."""


def refusal(path: Path, folder: Path) -> str | None:
    """Why `path` cannot be an artifact of the phase whose folder is `folder`; None when it can.

    Only the path is looked at (and the links it goes through): nothing is opened or read.
    """
    if not path.is_absolute():
        return "not an absolute path"
    if ".." in path.parts:
        return "a path with '..'"
    target = _resolved(path)
    if target is None:
        return "a path that cannot be followed (a loop of links, say)"
    if not _inside(target, folder.resolve()):
        return f"outside the phase's artifact folder {folder}"
    return None


def _resolved(path: Path) -> Path | None:
    """Where `path` leads, or None for a loop of links or a name no file can have (a NUL byte)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@dataclass(frozen=True)
class Found:
    """What a walk of an artifact folder found: the files to keep, and the links it refused."""

    files: tuple[Path, ...]
    refused: tuple[tuple[Path, str], ...]


def walk(folder: Path) -> Found:
    """Every regular file in `folder`; a link is followed only where it stays inside (others are refused)."""
    files, refused = [], []
    for path in _entries(folder):
        problem = refusal(path, folder)
        if problem is not None:
            refused.append((path, f"a link: {problem}"))
        elif is_regular(path):
            files.append(path)
    return Found(tuple(sorted(files)), tuple(refused))


def _entries(folder: Path) -> Iterator[Path]:
    """Every entry below `folder`, without following a linked folder."""
    for top, dirs, names in os.walk(folder, followlinks=False):
        for name in names:
            yield Path(top) / name
        yield from (Path(top) / name for name in dirs if (Path(top) / name).is_symlink())


def is_regular(path: Path) -> bool:
    """A plain file, through links (never a FIFO, a device or a folder, which hashing would block on or fail)."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def check_recorded(run_dir: RunDir, artifact: ArtifactView) -> str:
    """ok, missing, changed, or refused (a record outside its phase's artifact folder, never read)."""
    path = Path(artifact.path)
    full = path if path.is_absolute() else run_dir.root / path
    if refusal(full, run_dir.artifacts(artifact.phase)) is not None:
        return "refused"
    if not is_regular(full):
        return "missing"
    if full.stat().st_size != artifact.size:
        return "changed"  # the size tells without reading many GB of weights
    return "ok" if sha256_file(full) == artifact.sha256 else "changed"


def verify_completed(run: OpenRun) -> None:
    """Before a resumed run goes on: every artifact of a completed phase is as the journal recorded it.

    Raises ArtifactsChanged (exit 2) naming each deleted or changed file; the session, if it was
    left running, is stopped with that reason first, so it is never taken for an internal error.
    """
    journal, run_dir = run.journal, run.run_dir
    if journal.session_state() == SessionState.COMPLETED:
        return  # nothing will run, so nothing will use them
    done = {p.id for p in journal.phases()
            if p.state == PhaseState.PASSED or journal.exited_attempt(p.id) is not None}
    artifacts = take_snapshot(run_dir, journal).artifacts
    problems = [(a, status) for a in artifacts if a.phase in done
                if (status := check_recorded(run_dir, a)) != "ok"]
    if not problems:
        return
    named = "; ".join(f"{a.path} ({a.phase}): {_said(status)}" for a, status in problems[:NAMED])
    named += f"; and {len(problems) - NAMED} more" if len(problems) > NAMED else ""
    reason = f"artifacts of completed phases are not as recorded: {named}"
    if journal.session_state() == SessionState.RUNNING:
        journal.set_session_state(SessionState.STOPPED, reason)
    raise ArtifactsChanged(f"{run_dir.root}: {reason}. Nothing was run. Restore the files, or run "
                           f"`phasegate recover {run_dir.root}` to see what can be kept and start again from there")


def _said(status: str) -> str:
    return {"missing": "deleted", "changed": "changed since it was recorded",
            "refused": "outside its phase's artifact folder"}[status]
