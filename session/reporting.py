"""Writing what the controller knows to disk for people and agents: checkpoints, incidents, artifact hashes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phasegate.checkpoints.render import (
    ARTIFACT_LIST,
    artifact_list,
    render_checkpoint,
    render_incident,
)
from phasegate.floor.durable import atomic_write_text, fsync_dir
from phasegate.floor.errors import DiskFull
from phasegate.floor.rundir import utc_stamp
from phasegate.floor.states import SessionState
from phasegate.journal.events import EventKind
from phasegate.journal.snapshot import RunSnapshot, iso, take_snapshot
from phasegate.session.artifacts import (
    Refused,
    digest,
    folder_problem,
    home,
    is_regular,
    refusal,
    walk,
)
from phasegate.session.runs import OpenRun

LOG_TAIL_LINES = 40


def fallback_incident_dir() -> Path:
    """Where an incident goes when the run folder's disk is full (another filesystem, usually)."""
    return Path(os.environ.get("PHASEGATE_FALLBACK_DIR") or tempfile.gettempdir()) / "phasegate-incidents"


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

    def report_snapshot(self) -> RunSnapshot:
        """The snapshot a checkpoint or an incident is rendered from: read later, when this controller may be gone
        (so it never says "a live controller runs it")."""
        return replace(self.snapshot(), controller_live=False, by_controller=True)

    def checkpoint(self, phase_id: str | None, *, numbered: bool = True) -> Path:
        """Rewrite CHECKPOINT.md for the current state, atomically; at a phase's end, a stop or a pause also keep
        a numbered copy in checkpoints/NN-<phase>.md. The full artifact list goes to checkpoints/artifacts.json
        first, so the checkpoint never names a list older than the artifacts it counts as done."""
        snapshot = self.report_snapshot()
        text = render_checkpoint(snapshot, self.run.journal.redactor)
        folder = self.run.run_dir.checkpoints
        folder.mkdir(exist_ok=True)
        # Private like the logs: a checkpoint quotes what phases said. Between phase boundaries no artifact is
        # recorded (a starting attempt only drops its own phase's, which recover never imports): the list stands.
        if numbered or not (self.run.run_dir.root / ARTIFACT_LIST).exists():
            atomic_write_text(self.run.run_dir.root / ARTIFACT_LIST, artifact_list(snapshot), mode=0o600)
        atomic_write_text(self.run.run_dir.checkpoint, text, mode=0o600)
        if not numbered:  # a rewrite between phase boundaries: the state change itself is the journal's event
            return self.run.run_dir.checkpoint
        number = len(list(folder.glob("*.md"))) + 1
        path = folder / f"{number:02d}-{phase_id or self.run.journal.session_state()}.md"
        atomic_write_text(path, text, mode=0o600)
        self.run.journal.append_event(EventKind.CHECKPOINT_WRITTEN, phase_id, {"path": str(path)})
        return path

    def timeline(self, phase_id: str | None, limit: int = 30) -> list[str]:
        """The run's last events (this phase's and the session's), one line each."""
        mask = self.run.journal.redactor.redact  # before `_brief` cuts a line (and maybe a secret) short
        return [f"- {iso(e.ts)} {e.type}{' ' + e.phase if e.phase else ''}: "
                f"{_brief(mask(json.dumps(e.data, sort_keys=True)))}"
                for e in self.run.journal.recent_events(phase_id, limit)]

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
        text = render_incident(self.report_snapshot(), trigger=trigger, phase=phase_id, attempt=attempt,
                               evidence=evidence, log_tail=log_tail, now=now, timeline=self.timeline(phase_id),
                               redactor=self.run.journal.redactor)
        atomic_write_text(path, text, mode=0o600)
        self.run.journal.append_event(EventKind.INCIDENT_WRITTEN, phase_id, {"path": str(path), "trigger": trigger})
        return path

    def disk_full(self, exc: BaseException) -> DiskFull:
        """Stop safely on a full disk: journal the stop if possible, and write the incident where there is room."""
        reason = f"disk full: {exc}"
        try:
            self.run.journal.set_session_state(SessionState.STOPPED, reason, "disk_full")
        except Exception:  # noqa: BLE001 - the journal's disk is the full one; resume reconciles later
            pass
        try:
            where = self.incident("disk_full", None, None, {"error": str(exc)})
        except Exception:  # noqa: BLE001 - the run folder is full: use the fallback location
            where = self._fallback_incident(reason)
        return DiskFull(f"{self.run.run_dir.root}: no space left on device ({exc}). Completed results are intact. "
                        f"Free some space, then `phasegate resume {self.run.run_dir.root}`. Incident report: {where}")

    def _fallback_incident(self, reason: str) -> Path:
        folder = fallback_incident_dir()
        folder.mkdir(parents=True, exist_ok=True)
        now = self.clock()
        path = folder / f"INCIDENT-{self.run.run_dir.root.name}-{utc_stamp(datetime.fromtimestamp(now, UTC))}.md"
        try:
            text = render_incident(self.snapshot(), trigger="disk_full", phase=None, attempt=None,
                                   evidence={"reason": reason}, log_tail=[], now=now)
        except Exception:  # noqa: BLE001 - even reading may fail; say the essentials
            text = f"# Incident: disk full\n\nRun: {self.run.run_dir.root}\nReason: {reason}\n"
        path.write_text(text)
        path.chmod(0o600)
        return path

    def durable_artifacts(self, folder: Path, declared: Iterable[Path]) -> list[tuple[str, str, int]]:
        """Fsync every output of an attempt and return (path, sha256, size) for the journal.

        Only regular files inside `folder` count (a declared file outside it was refused when it was
        declared); a link that leads out of it, a hard link to a file elsewhere or a folder put out of
        place is refused with a warning, never read. Each file is checked again as it is opened.
        """
        found = walk(folder)
        refused = list(found.refused)
        bad = {path.resolve() for path, _ in found.refused}
        inside = [p for p in declared if refusal(p, folder) is None and is_regular(p) and p.resolve() not in bad]
        records: dict[str, tuple[str, str, int]] = {}
        for path in dict.fromkeys([*found.files, *inside]):
            try:
                sha256, size = digest(path, folder, fsync=True)
            except (Refused, OSError) as exc:
                refused.append((path, str(exc) if isinstance(exc, Refused) else f"cannot be read: {exc.strerror}"))
                continue
            shown = _display(path, self.run.run_dir.root)
            records[shown] = (shown, sha256, size)
        for path, problem in refused:
            self.run.journal.record_warning(EventKind.ARTIFACT_REFUSED, folder.name, {"path": str(path), "error": problem})
        # Every folder from artifacts/ down to each file: attempts recreate artifacts/<phase> itself.
        where = home(folder)
        directories = {where.parent} | ({where} if folder_problem(folder) is None else set())
        directories |= {d for p in map(Path, records) for d in (self.run.run_dir.root / p).resolve().parents
                        if where in d.parents}
        for directory in directories:
            if directory.is_dir():  # a phase may have removed its folder, or artifacts/ itself
                fsync_dir(directory)
        return sorted(records.values())


def _brief(data: str, limit: int = 160) -> str:
    return data if len(data) <= limit else data[: limit - 1] + "…"


def _display(path: Path, root: Path) -> str:
    """Artifacts inside the run folder are recorded relative to it, others absolutely."""
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path.resolve())
