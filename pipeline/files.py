"""Small file helpers for the built-in phases: atomic JSON/JSONL writes and hashes (on floor.durable), with a
per-run hash cache."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from phasegate.floor import durable
from phasegate.pipeline.errors import PhaseInputError

_CHUNK = 1 << 20


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` so that readers see the old file or the whole new one, never part (shared with the controller)."""
    durable.atomic_write_text(Path(path), text)
    return Path(path)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write `data` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON object per line atomically."""
    lines = [json.dumps(row, sort_keys=True, default=str) for row in rows]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file written by `atomic_write_jsonl`."""
    text = Path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def numbered_jsonl(path: Path, what: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line of a phase's input; a missing file or a line
    that is not JSON is a PhaseInputError naming `what`, the file and the line."""
    if not path.is_file():
        raise PhaseInputError(f"{what} {path} does not exist")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise PhaseInputError(f"{path} line {number} is not JSON: {error}") from error
        yield number, row


sha256_file = durable.sha256_file


def sha256_text(text: str) -> str:
    """The sha256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Where a run keeps the sha256 of files it has read (weights of ~15 GB are hashed once per run, not per load).
HASH_CACHE_NAME = Path("cache") / "file-hashes.json"
RUN_DIR_ENV = "PHASEGATE_RUN_DIR"  # set by the controller for every phase


class HashCache:
    """sha256 of files keyed by (resolved path, size, mtime_ns), kept in one JSON file.

    Phases are separate processes, so the cache lives on disk. A file whose size or mtime changed is hashed
    again; a cache file that cannot be read or parsed is ignored (and rewritten), never an error.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries = self._read()
        self._changed = False

    @classmethod
    def of_run(cls) -> HashCache | None:
        """The cache of the run this phase belongs to, or None outside a session (no run folder known)."""
        run_dir = os.environ.get(RUN_DIR_ENV)
        return cls(Path(run_dir) / HASH_CACHE_NAME) if run_dir else None

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # absent, unreadable, not JSON, not UTF-8
            return {}
        if not isinstance(data, dict):
            return {}
        return {key: entry for key, entry in data.items() if _valid_entry(entry)}

    def sha256(self, path: Path) -> str:
        """The file's sha256, from the cache when its size and mtime are those it was hashed at."""
        resolved = path.resolve()
        stat = resolved.stat()
        entry = self._entries.get(str(resolved))
        if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
            return entry["sha256"]
        digest = sha256_file(resolved)
        self._entries[str(resolved)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        self._changed = True
        return digest

    def save(self) -> None:
        """Write new entries atomically, merged with what other processes wrote meanwhile; a failure only loses
        the cache (the next load hashes again)."""
        if not self._changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, {**self._read(), **self._entries})
        except OSError:
            return
        self._changed = False


def _valid_entry(entry: Any) -> bool:
    """Whether a cache entry has the fields `HashCache.sha256` compares, with the right types."""
    return (isinstance(entry, dict) and isinstance(entry.get("size"), int)
            and isinstance(entry.get("mtime_ns"), int) and isinstance(entry.get("sha256"), str))


def hash_files(paths: Iterable[Path], root: Path, cache: HashCache | None = None) -> dict[str, Any]:
    """Per-file hashes plus one combined hash over `relative-name:sha256` lines, sorted.

    Inside a session the run's HashCache is used unless another is given, so a file is read once per run.
    """
    cache = cache if cache is not None else HashCache.of_run()
    digest = cache.sha256 if cache is not None else sha256_file
    files = {str(p.relative_to(root)): digest(p) for p in sorted(paths)}
    if cache is not None:
        cache.save()
    combined = sha256_text("".join(f"{name}:{sha}\n" for name, sha in sorted(files.items())))
    return {"sha256": combined if files else None, "files": files}
