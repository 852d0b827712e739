"""Recovering what a run completed when its journal cannot be trusted: from the last checkpoint's hashes."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from phasegate.floor.durable import sha256_file
from phasegate.floor.errors import RunDirError
from phasegate.floor.reading import read_regular_file
from phasegate.floor.rundir import RunDir, resolved
from phasegate.journal.events import EventKind
from phasegate.session.artifacts import Refused, opened, refusal
from phasegate.session.artifacts import digest as artifact_digest
from phasegate.session.runs import OpenRun, create_run
from phasegate.session.spec import load_spec


@dataclass(frozen=True)
class ArtifactCheck:
    phase: str
    path: str
    sha256: str
    status: str  # ok | changed | missing | refused (outside its phase's artifact folder: never read)


@dataclass(frozen=True)
class RecoveryPlan:
    """What the last checkpoint says was done, checked against the files on disk."""

    run_dir: RunDir
    checkpoint: Path
    completed: tuple[str, ...]
    artifacts: tuple[ArtifactCheck, ...]
    session_dir: Path | None = None
    plan_version: int = 1  # the version of the plan the checkpoint was written under (an amended run's)

    @property
    def recoverable(self) -> tuple[str, ...]:
        """Completed phases whose every recorded artifact is still there with the same hash."""
        bad = {a.phase for a in self.artifacts if a.status != "ok"}
        return tuple(p for p in self.completed if p not in bad)


def _front_matter(path: Path) -> dict:
    parts = path.read_text(encoding="utf-8", errors="replace").split("---", 2)
    data = yaml.safe_load(parts[1]) if len(parts) == 3 else None
    return data if isinstance(data, dict) else {}


def _check(run_dir: RunDir, record: object) -> ArtifactCheck | None:
    """One artifact the checkpoint lists, checked on disk; None for an entry that names no phase."""
    if not isinstance(record, dict) or not isinstance(record.get("phase"), str):
        return None
    path, digest = record.get("path"), record.get("sha256")
    if not isinstance(path, str) or not isinstance(digest, str):
        return ArtifactCheck(record["phase"], str(path), str(digest), "refused")
    full = run_dir.root / path
    folder = run_dir.artifacts(record["phase"])
    if refusal(full, folder) is not None:
        return ArtifactCheck(record["phase"], path, digest, "refused")
    if not os.path.lexists(full):
        return ArtifactCheck(record["phase"], path, digest, "missing")
    try:  # checked on the file opened: a link or a FIFO put there is never followed or read
        same = artifact_digest(full, folder)[0] == digest
    except (Refused, OSError):
        return ArtifactCheck(record["phase"], path, digest, "refused")
    return ArtifactCheck(record["phase"], path, digest, "ok" if same else "changed")


MAX_LIST_BYTES = 64 << 20


def _artifact_records(run_dir: RunDir, listed: object) -> list:
    """The artifacts a checkpoint names: listed inline (older runs), or in the list file it points to, which is
    read only from inside the run folder."""
    if isinstance(listed, list):
        return listed
    if not isinstance(listed, dict) or not isinstance(listed.get("list"), str):
        return []
    path = run_dir.root / listed["list"]
    if refusal(path, run_dir.checkpoints) is not None:
        return []
    try:
        records = json.loads(read_regular_file(path, max_bytes=MAX_LIST_BYTES))
    except (OSError, ValueError):
        return []
    return records if isinstance(records, list) else []


def plan_recovery(root: Path) -> RecoveryPlan:
    """Read the newest checkpoint that lists its work and verify every artifact it names."""
    run_dir = RunDir(resolved(Path(root)))  # a loop of links is exit 2, not a crash
    candidates = sorted(run_dir.checkpoints.glob("*.md"), reverse=True) + [run_dir.checkpoint]
    for checkpoint in candidates:
        if checkpoint.exists() and "completed_phases" in (data := _front_matter(checkpoint)):
            listed = _artifact_records(run_dir, data.get("artifacts"))
            checks = tuple(c for a in (listed if isinstance(listed, list) else []) if (c := _check(run_dir, a)))
            session_dir = Path(data["session_dir"]) if data.get("session_dir") else None
            version = data.get("plan_version") if isinstance(data.get("plan_version"), int) else 1
            return RecoveryPlan(run_dir, checkpoint, tuple(data["completed_phases"]), checks, session_dir, version)
    raise RunDirError(f"{run_dir.root}: no checkpoint lists completed work; nothing can be recovered, "
                      f"start the session again with `phasegate run {run_dir.spec}`")


def recover_into(plan: RecoveryPlan, target: Path) -> OpenRun:
    """A new run from the frozen session file, with the recoverable phases imported as passed."""
    frozen = load_spec(plan.run_dir.plan(plan.plan_version))  # the plan as amended when the checkpoint was written
    if plan.session_dir is not None:  # relative paths and phase commands resolve where the session file was
        frozen = replace(frozen, path=plan.session_dir / "session.toml")
    run = create_run(frozen, target, done=frozenset(plan.recoverable))
    journal = run.journal
    for phase in plan.recoverable:
        records = []
        for artifact in (a for a in plan.artifacts if a.phase == phase):  # all ok: the phase is recoverable
            copy = run.run_dir.root / artifact.path  # only verified files, never a link's target elsewhere
            copy.parent.mkdir(parents=True, exist_ok=True)
            _copy_verified(plan.run_dir, artifact, copy)
            records.append((artifact.path, artifact.sha256, copy.stat().st_size))
        attempt = journal.begin_attempt(phase, "recovered")
        journal.mark_exited(phase, attempt, 0, records)
        journal.finish_attempt(phase, attempt, passed=True, reason=f"recovered from {plan.run_dir.root}")
    journal.append_event(EventKind.RECOVERED, None, {"from": str(plan.run_dir.root), "phases": list(plan.recoverable)})
    return run


def _copy_verified(run_dir: RunDir, artifact: ArtifactCheck, copy: Path) -> None:
    """Copy a checked artifact from the file opened (checked again), and refuse a copy that is not what was checked."""
    source = run_dir.root / artifact.path
    try:
        with opened(source, run_dir.artifacts(artifact.phase)) as handle, open(copy, "wb") as out:
            shutil.copyfileobj(handle, out)
    except (Refused, OSError) as exc:
        raise RunDirError(f"{source}: changed while it was being recovered ({exc}); run `phasegate recover` "
                          f"again") from None
    if sha256_file(copy) != artifact.sha256:
        copy.unlink()
        raise RunDirError(f"{source}: changed while it was being recovered; run `phasegate recover` again")
