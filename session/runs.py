"""Creating a new run folder and opening an existing one."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phasegate.floor.durable import atomic_write_text, fsync_dir
from phasegate.floor.errors import JournalError, RunDirError
from phasegate.floor.rundir import RunDir, utc_stamp
from phasegate.floor.states import PhaseState
from phasegate.journal.store import Journal
from phasegate.session.spec import LoadedSpec, load_spec


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


def create_run(loaded: LoadedSpec, run_dir: Path | None = None, *, clock=time.time) -> OpenRun:
    """Make the run folder, freeze the session file into it and create the journal, all or nothing."""
    now = clock()
    root = Path(run_dir) if run_dir is not None else _default_run_dir(loaded.spec.session.name, now)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise RunDirError(f"{root}: the run folder exists and is not empty; pick another --run-dir "
                          f"or continue it with `phasegate resume {root}`")
    root = root.resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    # Built under a hidden name and renamed into place: a crash never leaves a half-made run.
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    folder = RunDir(staging)
    folder.create_layout()
    atomic_write_text(folder.spec, loaded.text)
    Journal.create(
        folder.db, run_id=root.name, name=loaded.spec.session.name, spec_sha256=loaded.sha256,
        session_dir=loaded.session_dir, spec_path=loaded.path,
        phases=[(p.id, p.kind) for p in loaded.spec.phases], clock=clock,
    ).close()
    if root.exists():
        root.rmdir()
    os.rename(staging, root)
    fsync_dir(root.parent)
    return OpenRun(RunDir(root), Journal.open(RunDir(root).db, clock=clock), loaded)


def open_run(root: Path, *, clock=time.time) -> OpenRun:
    """Open a run folder for resume or inspection, checking the frozen session file is unchanged."""
    folder = RunDir(Path(root).resolve())
    folder.require_existing()
    journal = Journal.open(folder.db, clock=clock)
    run = journal.run()
    if run is None:
        raise JournalError(f"{folder.db}: the journal has no run row; it was cut short while the run was created. "
                           f"Start the session again with `phasegate run`")
    frozen = load_spec(folder.spec)
    if frozen.sha256 != run.spec_sha256:
        raise RunDirError(f"{folder.spec}: the frozen session file was edited after the run started "
                          f"(sha256 differs from the journal); restore it or start a new run")
    original = LoadedSpec(spec=frozen.spec, path=run.spec_path, text=frozen.text, sha256=frozen.sha256)
    return OpenRun(folder, journal, original)
