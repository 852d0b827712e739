"""Creating a new run folder and opening an existing one."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from phasegate.floor.durable import atomic_write_text, fsync_dir
from phasegate.floor.errors import JournalError, RunDirError
from phasegate.floor.reading import read_regular_file
from phasegate.floor.rundir import RunDir, resolved, utc_stamp
from phasegate.floor.states import PhaseState
from phasegate.journal.store import Journal
from phasegate.session.preflight import check_session
from phasegate.session.spec import LoadedSpec, load_spec

MAX_CHECKPOINT_BYTES = 16 << 20


@dataclass
class OpenRun:
    """A run folder with its journal and its frozen session file."""

    run_dir: RunDir
    journal: Journal
    loaded: LoadedSpec

    @property
    def spec_budget(self) -> dict[str, Any]:
        """What the budget view needs from the session file, with the projection of the phases left."""
        info = self.loaded.spec.session
        return {"budget_usd": info.budget_usd, "gpu_hourly_usd": info.gpu_hourly_usd, "gpu": info.gpu,
                "warn_at": info.budget_warn_at, "remaining_hours": self.remaining_hours()}

    def phase_estimate_min(self, phase_id: str) -> float | None:
        """Minutes a phase should take: its declared estimate, else measured throughput of an earlier phase."""
        phases = self.loaded.spec.phases
        phase = self.loaded.spec.phase(phase_id)
        if phase.estimate_min is not None:
            return phase.estimate_min
        count = phase.params.get("count")
        if not isinstance(count, int | float):
            return None
        for earlier in reversed(phases[: phases.index(phase)]):
            record = self.journal.phase(earlier.id)
            done_count = earlier.params.get("count")
            if record.state == PhaseState.PASSED and isinstance(done_count, int | float) and done_count \
                    and record.ended_at:
                minutes = (record.ended_at - record.started_at) / 60
                return minutes / done_count * count  # items per minute measured in the earlier phase
        return None

    def remaining_hours(self) -> float | None:
        """Hours the phases not yet passed should take, from the estimates that are known."""
        estimates = [self.phase_estimate_min(p.id) for p in self.loaded.spec.phases
                     if self.journal.phase_state(p.id) != PhaseState.PASSED]
        known = [e for e in estimates if e is not None]
        return sum(known) / 60 if known else (0.0 if not estimates else None)

    @property
    def session_dir(self) -> Path:
        return self.journal.run().session_dir


def _default_run_dir(name: str, now: float) -> Path:
    base = Path("runs") / f"{name}-{utc_stamp(datetime.fromtimestamp(now, UTC))}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def create_run(loaded: LoadedSpec, run_dir: Path | None = None, *, clock=time.time,
               done: frozenset[str] = frozenset()) -> OpenRun:
    """Make the run folder, freeze the session file into it and create the journal, all or nothing (`done`: the
    phases a recovery imports as completed, which never run)."""
    check_session(loaded, loaded.path, done=done)
    now = clock()
    root = Path(run_dir) if run_dir is not None else _default_run_dir(loaded.spec.session.name, now)
    try:
        staging = _staging_folder(root)
    except OSError as exc:
        reason = "a part of that path is a file, not a folder" if exc.errno in (errno.EEXIST, errno.ENOTDIR) \
            else exc.strerror or str(exc)
        raise RunDirError(f"{root}: cannot create the run folder here ({reason}); pick another --run-dir") from None
    root = resolved(root)
    try:
        _build(RunDir(staging), loaded, root.name, clock)
        if root.exists():
            root.rmdir()
        os.rename(staging, root)
        fsync_dir(root.parent)
    except (OSError, JournalError) as exc:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-made stays behind
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RunDirError(f"{root}: cannot create the run folder ({reason}); free some space or pick "
                          f"another --run-dir, then run the session again") from None
    return OpenRun(RunDir(root), Journal.open(RunDir(root).db, clock=clock), loaded)


def _staging_folder(root: Path) -> Path:
    """A hidden, empty folder beside `root`, renamed into place once the run is complete."""
    root = resolved(root)
    if root.exists() and not root.is_dir():
        raise RunDirError(f"{root}: is a file, not a folder; pick another --run-dir")
    if root.exists() and any(root.iterdir()):
        raise RunDirError(f"{root}: the run folder exists and is not empty; pick another --run-dir "
                          f"or continue it with `phasegate resume {root}`")
    root.parent.mkdir(parents=True, exist_ok=True)
    # Built under a hidden name and renamed into place: a crash never leaves a half-made run.
    return Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))


def _build(folder: RunDir, loaded: LoadedSpec, run_id: str, clock) -> None:
    """Lay out a new run folder: its folders, the frozen session file and the journal."""
    folder.create_layout()
    atomic_write_text(folder.spec, loaded.text, mode=0o600)  # its env tables may hold secrets
    Journal.create(
        folder.db, run_id=run_id, name=loaded.spec.session.name, spec_sha256=loaded.sha256,
        session_dir=loaded.session_dir, spec_path=loaded.path,
        phases=[(p.id, p.kind) for p in loaded.spec.phases], clock=clock,
    ).close()


def open_run(root: Path, *, clock=time.time) -> OpenRun:
    """Open a run folder for resume or inspection, checking the frozen session file is unchanged."""
    folder = RunDir(resolved(root))
    folder.require_existing()
    journal = Journal.open(folder.db, clock=clock)
    run = journal.run()
    if run is None:
        raise JournalError(f"{folder.db}: the journal has no run row; it was cut short while the run was created. "
                           f"Start the session again with `phasegate run`")
    plan = folder.plan(journal.plan_version())  # the session file, or its newest amended version
    frozen = load_spec(plan)
    if frozen.sha256 != run.spec_sha256:
        raise RunDirError(f"{plan}: the frozen session file was edited after the run started "
                          f"(sha256 differs from the journal); restore it, change the plan with "
                          f"`phasegate amend {folder.root}`, or start a new run")
    _check_against_checkpoint(folder, journal)
    original = LoadedSpec(spec=frozen.spec, path=run.spec_path, text=frozen.text, sha256=frozen.sha256)
    return OpenRun(folder, journal, original)


def _check_against_checkpoint(folder: RunDir, journal: Journal) -> None:
    """Refuse a journal that lost phases the last checkpoint saw pass, rather than quietly run them again."""
    # The checkpoint is written atomically after each phase's completion is committed, so it can never
    # be ahead of an intact journal: a damaged write-ahead log rolls commits back without any error.
    phases = journal.phases()
    passed = {p.id for p in phases if p.state == PhaseState.PASSED}
    known = {p.id for p in phases}  # a phase the session does not have was never the journal's to lose
    lost = [phase for phase in checkpoint_completed_phases(folder.checkpoint) if phase in known - passed]
    if lost:
        raise JournalError(
            f"{folder.db}: the journal has lost committed work: the last checkpoint {folder.checkpoint} says "
            f"phase(s) {', '.join(lost)} passed, the journal does not: its write-ahead log was damaged (that "
            f"rolls commits back without an error), or the checkpoint was edited, which phasegate cannot tell "
            f"apart. Nothing was run again; `phasegate recover {folder.root}` lists what can be kept and imports "
            f"it into a new run. If you edited {folder.checkpoint.name} yourself, delete it and resume: the "
            f"journal is the truth and writes it anew")


def checkpoint_completed_phases(path: Path) -> list[str]:
    """The phases a checkpoint's front matter lists as completed; none when it is missing or unreadable."""
    try:
        text = read_regular_file(path, max_bytes=MAX_CHECKPOINT_BYTES).decode("utf-8", errors="replace")
        parts = text.split("---", 2)
        data = yaml.load(parts[1], Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if len(parts) == 3 else None
    except (OSError, yaml.YAMLError, RecursionError):
        return []
    completed = data.get("completed_phases") if isinstance(data, dict) else None
    return [str(phase) for phase in completed] if isinstance(completed, list) else []
