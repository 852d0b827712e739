"""The run folder around a review: a reviewer may read the artifacts and earlier reviews, never change them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from phasegate.reviews.repo_digest import file_digest

MISSING = "missing"
# What a reviewer could falsify in the run folder: every phase's outputs and the audit copies of reviews.
WATCHED_FOLDERS = ("artifacts", "reviews")


def _signature(path: Path) -> str:
    """What changes whenever a file is written, replaced, linked or chmod-ed: the kernel sets ctime, and no
    process can set it back. Cheap for a many-GiB checkpoint, unlike hashing it twice per review."""
    try:
        info = path.lstat()
    except OSError:
        return MISSING
    link = f" -> {os.readlink(path)}" if path.is_symlink() else ""
    return f"{info.st_mode:o} {info.st_ino} {info.st_size} {info.st_mtime_ns} {info.st_ctime_ns}{link}"


@dataclass(frozen=True)
class ArtifactWatch:
    """The reviewed phase's artifacts with their journaled sha256, and every file the run folder keeps."""

    run_dir: Path
    folder: Path
    journaled: Mapping[str, str]  # path as the journal keeps it (relative to the run folder, or absolute) -> sha256

    def _path(self, journaled: str) -> Path:
        path = Path(journaled)
        return path if path.is_absolute() else self.run_dir.resolve() / path

    def now(self) -> dict[Path, str]:
        """A signature of every entry under the run folder's artifacts/ and reviews/, by resolved path."""
        root = self.run_dir.resolve()
        found: dict[Path, str] = {}
        for name in WATCHED_FOLDERS:
            for dirpath, dirnames, filenames in os.walk(root / name):  # links are listed, never followed
                base = Path(dirpath)
                found[base] = "folder"
                for entry in (*dirnames, *filenames):
                    if entry in filenames or (base / entry).is_symlink():
                        found[base / entry] = _signature(base / entry)
        return found

    def changed(self, before: Mapping[Path, str], after: Mapping[Path, str]) -> list[str]:
        """The entries that differ between two readings, as the run folder names them."""
        root = self.run_dir.resolve()
        changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
        return [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in changed]

    def changed_since_the_phase(self) -> list[str]:
        """Journaled artifacts of the reviewed phase that no longer hold what the phase wrote."""
        expected = {self._path(p): digest for p, digest in self.journaled.items()}
        now = {path: file_digest(path) if path.exists() else MISSING for path in expected}
        return self.changed(expected, now)
