"""The artifacts of a reviewed phase, watched around the review: a reviewer may read them, never change them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from phasegate.reviews.repo_digest import file_digest

MISSING = "missing"


@dataclass(frozen=True)
class ArtifactWatch:
    """A phase's artifacts: their journaled sha256 and every file of its artifact folder."""

    run_dir: Path
    folder: Path
    journaled: Mapping[str, str]  # path as the journal keeps it (relative to the run folder, or absolute) -> sha256

    def _path(self, journaled: str) -> Path:
        path = Path(journaled)
        return path if path.is_absolute() else self.run_dir.resolve() / path

    def now(self) -> dict[Path, str]:
        """The sha256 of each artifact as it is now, by resolved path (a file made since counts too)."""
        paths = {self._path(p) for p in self.journaled}
        if self.folder.is_dir():
            paths |= {self.folder.resolve() / p.relative_to(self.folder) for p in self.folder.rglob("*") if not p.is_dir()}
        return {path: file_digest(path) if path.exists() else MISSING for path in paths}

    def changed(self, before: Mapping[Path, str], after: Mapping[Path, str]) -> list[str]:
        """The artifacts whose content differs between two readings, as the run folder names them."""
        root = self.run_dir.resolve()
        changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
        return [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in changed]

    def changed_since_the_phase(self) -> list[str]:
        """Journaled artifacts that no longer hold what the phase wrote."""
        expected = {self._path(p): digest for p, digest in self.journaled.items()}
        now = {path: digest for path, digest in self.now().items() if path in expected}
        return self.changed(expected, now)
