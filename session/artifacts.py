"""A phase's artifacts: regular files inside its artifact folder, and still what the journal says on resume."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from phasegate.floor.errors import InvalidInput
from phasegate.floor.rundir import RunDir
from phasegate.floor.states import PhaseState, SessionState
from phasegate.journal.snapshot import ArtifactView, take_snapshot
from phasegate.session.runs import OpenRun

# How many bad artifacts a message names (the rest are counted): a message is read, not scrolled.
NAMED = 5
# Declared artifacts a controller remembers per attempt: past it the walk of the folder still finds them.
MAX_DECLARED = 10_000
# O_NONBLOCK: opening a FIFO put in a file's place must not wait for a writer that never comes.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)


class ArtifactsChanged(InvalidInput):
    """A completed phase's artifact was deleted or changed after the journal recorded its sha256."""


class Refused(Exception):
    """A file that cannot be an artifact (outside the phase's folder, not a regular file); never read."""


def home(folder: Path) -> Path:
    """Where the artifact folder `<run>/artifacts/<phase>` really is: the run folder resolved, the last two
    names as written, so that a link a phase puts in place of either never moves the folder elsewhere."""
    return Path(os.path.realpath(folder.parent.parent)) / folder.parent.name / folder.name


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
    if not _inside(target, home(folder)):
        return f"outside the phase's artifact folder {folder}"
    if not _utf8(str(path)) or not _utf8(str(target)):
        return "a file name that is not UTF-8; rename it"
    return None


def _resolved(path: Path) -> Path | None:
    """Where `path` leads, or None for a loop of links or a name no file can have (a NUL byte)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _utf8(text: str) -> bool:
    """Whether `text` is valid Unicode (a file name of undecodable bytes holds lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def folder_problem(folder: Path) -> str | None:
    """Why the artifact folder cannot be read as the phase's (removed, or a link or a file in its place)."""
    if folder.is_symlink() or folder.parent.is_symlink() or os.path.realpath(folder) != str(home(folder)):
        return "the artifact folder was replaced by a link; nothing in it was read"
    if not folder.is_dir():
        return "the artifact folder was removed or replaced by a file; no artifact was recorded"
    return None


def fresh_folder(folder: Path) -> None:
    """An empty artifact folder for a new attempt; a link a phase left in its place is removed, never followed."""
    clear_folder(folder)
    folder.mkdir(parents=True)


def clear_folder(folder: Path) -> None:
    """Remove what an attempt left at `folder` (a link or a file in the place of it or of `artifacts/` too)."""
    for place in (folder.parent, folder):
        if place.is_symlink() or (place.exists() and not place.is_dir()):
            place.unlink()
    shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def opened(path: Path, folder: Path) -> Iterator[BinaryIO]:
    """`path` open for reading, checked on the file actually opened (a link or a FIFO swapped in after an
    earlier check is caught): a regular file inside `folder`. Raises Refused, FileNotFoundError."""
    if (problem := refusal(path, folder)) is not None:
        raise Refused(problem)
    fd = os.open(path, _READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused("not a regular file")
        if not _inside(_opened_path(fd, path), home(folder)):
            raise Refused(f"outside the phase's artifact folder {folder}")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def _opened_path(fd: int, path: Path) -> Path:
    """Where an open file lives, as the kernel says (Linux), else as its path resolves now."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return Path(os.path.realpath(path))


def digest(path: Path, folder: Path, *, fsync: bool = False) -> tuple[str, int]:
    """The sha256 and size of an artifact, read from the checked open file (fsynced first if asked)."""
    with opened(path, folder) as handle:
        if fsync:
            os.fsync(handle.fileno())
        size = os.fstat(handle.fileno()).st_size
        return hashlib.file_digest(handle, "sha256").hexdigest(), size


@dataclass(frozen=True)
class Found:
    """What a walk of an artifact folder found: the files to keep, and the entries it refused."""

    files: tuple[Path, ...]
    refused: tuple[tuple[Path, str], ...]


def walk(folder: Path) -> Found:
    """Every regular file in `folder`; a link is followed only where it stays inside (others are refused),
    a hard link to a file elsewhere is refused, and so is a folder that is not where it should be."""
    if (problem := folder_problem(folder)) is not None:
        return Found((), ((folder, problem),))
    files, refused = [], []
    for path in _entries(folder):
        problem = refusal(path, folder)
        if problem is not None:
            refused.append((path, f"a link: {problem}" if path.is_symlink() else problem))
        elif is_regular(path):
            files.append(path)
    files, shared = _without_outside_links(files)
    refused += [(path, "a hard link to a file outside the phase's artifact folder; copy it instead")
                for path in shared]
    return Found(tuple(sorted(files)), tuple(refused))


def _without_outside_links(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """The files whose every hard link is inside the folder, and those with a name elsewhere too."""
    plain = [(path, path.lstat()) for path in files if not path.is_symlink()]
    names = Counter((st.st_dev, st.st_ino) for _, st in plain)
    shared = {path for path, st in plain if st.st_nlink > names[(st.st_dev, st.st_ino)]}
    shared_inodes = {(st.st_dev, st.st_ino) for path, st in plain if path in shared}
    # A link inside that leads to a shared file is refused with it.
    shared |= {path for path in files if path.is_symlink() and _inode(path) in shared_inodes}
    return [p for p in files if p not in shared], sorted(shared)


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


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
    """ok, missing, changed, or refused (outside its phase's artifact folder or not a regular file: never read)."""
    path = Path(artifact.path)
    full = path if path.is_absolute() else run_dir.root / path
    folder = run_dir.artifacts(artifact.phase)
    if refusal(full, folder) is not None:
        return "refused"
    if not os.path.lexists(full):
        return "missing"
    try:
        with opened(full, folder) as handle:
            if os.fstat(handle.fileno()).st_size != artifact.size:
                return "changed"  # the size tells without reading many GB of weights
            same = hashlib.file_digest(handle, "sha256").hexdigest() == artifact.sha256
    except FileNotFoundError:
        return "missing"
    except (Refused, OSError):
        return "refused"
    return "ok" if same else "changed"


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
            "refused": "outside its phase's artifact folder or not a regular file"}[status]
