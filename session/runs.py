"""Creating a new run folder and opening an existing one."""

from __future__ import annotations

import errno
import math
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
from phasegate.journal.snapshot import take_snapshot
from phasegate.journal.store import Journal
from phasegate.pipeline.data.rounds import candidate_cap
from phasegate.session.gpu import NvmlReader
from phasegate.session.preflight import check_session
from phasegate.session.spec import LoadedSpec, load_spec

MAX_CHECKPOINT_BYTES = 16 << 20
# Phases whose time is candidates over a measured generation rate (the pilot's and scale's metrics).
GENERATION_KINDS = frozenset({"generate", "scale"})
DEFAULT_NUM_SHARDS = 10  # the scale phase's default `num_shards`


def planned_candidates(params: dict[str, Any], kept_per_candidate: float | None) -> float | None:
    """Candidates a generation phase will make: `count`, or with `target_kept` the target over the
    measured acceptance (never past `max_candidates`, all of it when nothing was kept)."""
    target = params.get("target_kept")
    if isinstance(target, int) and target > 0:
        cap = candidate_cap(target, params.get("max_candidates"))
        return min(cap, target / kept_per_candidate) if kept_per_candidate else cap
    count = params.get("count")
    return count if isinstance(count, int | float) and count > 0 else None


def concurrent_workers(kind: str, params: dict[str, Any], device: str, gpus: int) -> tuple[int, int]:
    """(shards running at once, shards) as the scale phase's executor decides; (1, 1) for the pilot.

    Local on GPUs: one worker per visible GPU (at most `workers`). Local on CPU: the workers share the
    cores one measured process had, so no faster than one. Ray: `workers` if set, else one (a cluster
    the controller cannot see is counted as the slow case, the safe side of a budget).
    """
    if kind != "scale":
        return 1, 1
    shards = max(1, int(params.get("num_shards") or DEFAULT_NUM_SHARDS))
    workers = params.get("workers")
    if params.get("executor") == "ray":
        at_once = workers or 1
    elif device == "cpu" or gpus < 1:
        at_once = 1
    else:
        at_once = min(workers or gpus, gpus)
    return max(1, min(int(at_once), shards)), shards


def generation_minutes(candidates: float, rows_per_s: float, model_load_s: float, workers: int = 1,
                       shards: int = 1) -> float:
    """Minutes for `candidates` at a measured per-worker rate: one model load per wave of shards
    (each worker loads the model for each shard it runs), then the candidates split over the workers."""
    waves = math.ceil(shards / workers)
    return (waves * model_load_s + candidates / (rows_per_s * workers)) / 60


def visible_gpu_count() -> int:
    """GPUs a phase's local workers would use: CUDA_VISIBLE_DEVICES when set, else what NVML sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return len([g for g in listed.split(",") if g.strip() and g.strip() != "-1"])
    return sum(sample.available for sample in NvmlReader().read(()))


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

    def phase_estimate_min(self, phase_id: str, metrics: dict[str, dict[str, float]] | None = None
                           ) -> float | None:
        """Minutes a phase should take: its declared estimate, else the generation rate an earlier phase
        measured (model load apart, workers counted), else an earlier phase's wall time scaled by count.

        `metrics`: the journal's metrics by phase, when the caller has read them already.
        """
        phases = self.loaded.spec.phases
        phase = self.loaded.spec.phase(phase_id)
        if phase.estimate_min is not None:
            return phase.estimate_min
        if phase.kind in GENERATION_KINDS:
            measured = self._measured_minutes(phase, self._metrics() if metrics is None else metrics)
            if measured is not None:
                return measured
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

    def _metrics(self) -> dict[str, dict[str, float]]:
        """Every phase's latest metrics, as the journal holds them."""
        return take_snapshot(self.run_dir, self.journal).metrics

    def _measured_minutes(self, phase: Any, metrics: dict[str, dict[str, float]]) -> float | None:
        """The projection from the latest earlier passed phase that measured `rows_per_s`, or None."""
        phases = self.loaded.spec.phases
        for earlier in reversed(phases[: phases.index(phase)]):
            found = metrics.get(earlier.id, {})
            rate = found.get("rows_per_s")
            if not rate or rate <= 0 or self.journal.phase(earlier.id).state != PhaseState.PASSED:
                continue
            candidates = planned_candidates(phase.params, found.get("kept_per_candidate"))
            if candidates is None:
                return None
            model = self.loaded.spec.model
            device = model.device if model is not None else "auto"
            gpus = visible_gpu_count() if phase.kind == "scale" and device != "cpu" else 0
            workers, shards = concurrent_workers(phase.kind, phase.params, device, gpus)
            return generation_minutes(candidates, rate, found.get("model_load_s") or 0.0, workers, shards)
        return None

    def remaining_hours(self) -> float | None:
        """Hours the phases not yet passed should take, from the estimates that are known."""
        left = [p for p in self.loaded.spec.phases if self.journal.phase_state(p.id) != PhaseState.PASSED]
        projected = any(p.kind in GENERATION_KINDS and p.estimate_min is None for p in left)
        metrics = self._metrics() if projected else {}  # read once, and only when a projection needs it
        estimates = [self.phase_estimate_min(p.id, metrics) for p in left]
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
