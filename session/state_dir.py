"""A phase's state folder: kept across its attempts (a crash, a retry, a stop) for resumable work such as step
checkpoints and partial shards, and moved aside, never reused, when the phase's inputs change."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from phasegate.session.spec import PhaseSpec

# Which inputs the state was made from: a later attempt with other inputs must not build on it.
KEY_FILE = ".phasegate-inputs"


def state_key(argv: list[str], phase: PhaseSpec, params: dict[str, Any]) -> str:
    """The inputs state depends on: the command, its environment and parameters (not the rest of the session)."""
    payload = json.dumps({"argv": argv, "env": phase.env, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def prepare_state_folder(folder: Path, key: str, clock=time.time) -> Path | None:
    """Make `folder` ready for an attempt with inputs `key`; returns where older state was moved aside, if it was."""
    moved = None
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        folder.unlink()  # a phase may not swap its state folder for a link to elsewhere: never followed
    elif folder.is_dir() and _key(folder) != key:
        moved = _free_name(folder, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock())))
        os.rename(folder, moved)  # kept, for the operator: work made from other inputs is never silently reused
    folder.mkdir(parents=True, exist_ok=True)
    # A plain write: a key torn by a crash only reads as other inputs, and that state is moved aside, never reused.
    (folder / KEY_FILE).write_text(key + "\n")
    return moved


def _free_name(folder: Path, stamp: str) -> Path:
    """`<phase>.moved-<stamp>`, numbered when that name is taken: an older moved-aside state is never replaced."""
    candidate, number = folder.with_name(f"{folder.name}.moved-{stamp}"), 1
    while candidate.exists():
        number += 1
        candidate = folder.with_name(f"{folder.name}.moved-{stamp}-{number}")
    return candidate


def _key(folder: Path) -> str | None:
    try:
        return (folder / KEY_FILE).read_text().strip()
    except OSError:
        return None
