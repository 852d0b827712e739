"""Writing what the controller knows to disk for people and agents: checkpoints, incidents, artifact hashes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phasegate.checkpoints.render import render_checkpoint, render_incident

from .rundir import atomic_write_text, fsync_dir, sha256_file, utc_stamp
from .runs import OpenRun
from .snapshot import RunSnapshot, take_snapshot

LOG_TAIL_LINES = 40


def tail_lines(path: Path, count: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines of a log file (bounded read, whatever its size)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            data = handle.read()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-count:]


class Reporter:
    """Renders checkpoints and incident reports from the journal and writes them atomically."""

    def __init__(self, run: OpenRun, clock) -> None:
        self.run = run
        self.clock = clock

    def snapshot(self) -> RunSnapshot:
        return take_snapshot(self.run.run_dir, self.run.journal, spec_budget=self.run.spec_budget, now=self.clock())

    def checkpoint(self, phase_id: str | None) -> Path:
        """Write checkpoints/NN-<phase>.md and CHECKPOINT.md for the current state."""
        text = render_checkpoint(self.snapshot())
        folder = self.run.run_dir.checkpoints
        folder.mkdir(exist_ok=True)
        number = len(list(folder.glob("*.md"))) + 1
        path = folder / f"{number:02d}-{phase_id or self.run.journal.session_state()}.md"
        atomic_write_text(path, text)
        atomic_write_text(self.run.run_dir.checkpoint, text)
        self.run.journal.append_event("checkpoint_written", phase_id, {"path": str(path)})
        return path

    def incident(self, trigger: str, phase_id: str | None, attempt: int | None, evidence: dict[str, Any]) -> Path:
        """Write incidents/INCIDENT-<stamp>.md with the evidence, the log tail and the way back."""
        now = self.clock()
        folder = self.run.run_dir.incidents
        folder.mkdir(exist_ok=True)
        path = folder / f"INCIDENT-{utc_stamp(datetime.fromtimestamp(now, UTC))}.md"
        n = 1
        while path.exists():
            n += 1
            path = path.with_name(f"INCIDENT-{utc_stamp(datetime.fromtimestamp(now, UTC))}-{n}.md")
        log_tail = tail_lines(self.run.run_dir.log(phase_id)) if phase_id else []
        text = render_incident(self.snapshot(), trigger=trigger, phase=phase_id, attempt=attempt,
                               evidence=evidence, log_tail=log_tail, now=now)
        atomic_write_text(path, text)
        self.run.journal.append_event("incident_written", phase_id, {"path": str(path), "trigger": trigger})
        return path

    def durable_artifacts(self, folder: Path, declared: Iterable[Path]) -> list[tuple[str, str, int]]:
        """Fsync every output of an attempt and return (path, sha256, size) for the journal."""
        files = sorted({p for p in folder.rglob("*") if p.is_file()} | {p for p in declared if p.is_file()})
        records = []
        for path in files:
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
            records.append((_display(path, self.run.run_dir.root), sha256_file(path), path.stat().st_size))
        for directory in {p.parent for p in files} | {folder}:
            fsync_dir(directory)
        return records


def _display(path: Path, root: Path) -> str:
    """Artifacts inside the run folder are recorded relative to it, others absolutely."""
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path.resolve())
