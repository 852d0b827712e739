"""Small file helpers for the built-in phases: atomic JSON/JSONL writes and hashes (on session.durable)."""

from __future__ import annotations

import hashlib
import json
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


def hash_files(paths: Iterable[Path], root: Path) -> dict[str, Any]:
    """Per-file hashes plus one combined hash over `relative-name:sha256` lines, sorted."""
    files = {str(p.relative_to(root)): sha256_file(p) for p in sorted(paths)}
    combined = sha256_text("".join(f"{name}:{sha}\n" for name, sha in sorted(files.items())))
    return {"sha256": combined if files else None, "files": files}
