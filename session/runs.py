"""Creating a new run folder and opening an existing one."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import JournalError, RunDirError
from .journal import Journal
from .rundir import RunDir, atomic_write_text, utc_stamp
from .spec import LoadedSpec, load_spec


@dataclass
class OpenRun:
    """A run folder with its journal and its frozen session file."""

    run_dir: RunDir
    journal: Journal
    loaded: LoadedSpec

    @property
    def spec_budget(self) -> dict[str, float | None]:
        info = self.loaded.spec.session
        return {"budget_usd": info.budget_usd, "gpu_hourly_usd": info.gpu_hourly_usd}

    @property
    def session_dir(self) -> Path:
        return Path(self.journal.run_row()["session_dir"])


def _default_run_dir(name: str, now: float) -> Path:
    base = Path("runs") / f"{name}-{utc_stamp(datetime.fromtimestamp(now, UTC))}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def create_run(loaded: LoadedSpec, run_dir: Path | None = None, *, clock=time.time) -> OpenRun:
    """Make the run folder, freeze the session file into it and create the journal."""
    now = clock()
    root = Path(run_dir) if run_dir is not None else _default_run_dir(loaded.spec.session.name, now)
    if root.exists() and any(root.iterdir()):
        raise RunDirError(f"{root}: the run folder exists and is not empty; pick another --run-dir "
                          f"or continue it with `phasegate resume {root}`")
    folder = RunDir(root.resolve())
    folder.create_layout()
    atomic_write_text(folder.spec, loaded.text)
    run_id = folder.root.name
    journal = Journal.create(
        folder.db, run_id=run_id, name=loaded.spec.session.name, spec_sha256=loaded.sha256,
        session_dir=loaded.session_dir, spec_path=loaded.path,
        phases=[(p.id, p.kind) for p in loaded.spec.phases], clock=clock,
    )
    frozen = LoadedSpec(spec=loaded.spec, path=loaded.path, text=loaded.text, sha256=loaded.sha256)
    return OpenRun(folder, journal, frozen)


def open_run(root: Path, *, clock=time.time) -> OpenRun:
    """Open a run folder for resume or inspection, checking the frozen session file is unchanged."""
    folder = RunDir(Path(root).resolve())
    folder.require_existing()
    journal = Journal.open(folder.db, clock=clock)
    row = journal.run_row()
    if row is None:
        raise JournalError(f"{folder.db}: the journal has no run row; it was cut short while the run was created. "
                           f"Start the session again with `phasegate run`")
    frozen = load_spec(folder.spec)
    if frozen.sha256 != row["spec_sha256"]:
        raise RunDirError(f"{folder.spec}: the frozen session file was edited after the run started "
                          f"(sha256 differs from the journal); restore it or start a new run")
    original = LoadedSpec(spec=frozen.spec, path=Path(row["spec_path"]), text=frozen.text, sha256=frozen.sha256)
    return OpenRun(folder, journal, original)
