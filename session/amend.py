"""Amending a run's plan: new values (`--set KEY=VALUE`) or a whole new session file, validated like `check`,
refused where it would change work already done, frozen as the next version (session.vN.toml)."""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from phasegate.floor.durable import atomic_write_text
from phasegate.floor.errors import InvalidInput
from phasegate.floor.states import PhaseState, SessionState
from phasegate.session.phase_inputs import session_redactor
from phasegate.session.preflight import check_session
from phasegate.session.runs import OpenRun
from phasegate.session.spec import LoadedSpec, SessionSpec, load_spec

# Session keys a plan may not change: the name labels the run; the seed made every phase that already ran.
FIXED_SESSION_KEYS = ("name",)
SEED_KEY = "seed"
MAX_CHANGES_LISTED = 20


@dataclass(frozen=True)
class Proposal:
    """A new version of a run's plan, validated, with what it changes and why."""

    loaded: LoadedSpec  # its path is the original session file's: relative paths resolve as before
    version: int
    changes: tuple[str, ...]
    diff: str
    reason: str


def propose(run: OpenRun, *, sets: list[str], session_file: Path | None, reason: str) -> Proposal:
    """The amended plan from `--set` assignments or a new session file, validated and checked against the run."""
    if not reason.strip():
        raise InvalidInput("an amendment needs a reason: --reason TEXT")
    if bool(sets) == (session_file is not None):
        raise InvalidInput("give either --set KEY=VALUE (one or more) or --session NEW.toml")
    text = _read_new_plan(session_file) if session_file is not None else _with_values(run.loaded.text, sets)
    return from_text(run, text, reason)


def from_text(run: OpenRun, text: str, reason: str) -> Proposal:
    """The proposal of plan `text` as the run's next version (what a live controller checks again)."""
    current = run.loaded
    version = run.journal.plan_version() + 1
    loaded = _validated(run, text, version)
    changes = tuple(_changes(tomllib.loads(current.text), tomllib.loads(text)))
    if not changes:
        raise InvalidInput(f"the amended plan is the same as version {version - 1}; nothing to amend")
    problem = refusal(run, loaded.spec)
    if problem is not None:
        raise InvalidInput(f"{run.run_dir.root}: cannot amend the plan: {problem}")
    diff = "".join(difflib.unified_diff(current.text.splitlines(keepends=True), text.splitlines(keepends=True),
                                        run.run_dir.plan(version - 1).name, run.run_dir.plan(version).name))
    return Proposal(loaded, version, changes, diff, reason.strip())


def adopt(run: OpenRun, proposal: Proposal, environ: dict[str, str] | None = None) -> Path:
    """Freeze the proposal as the run's next plan version and journal it; it is checked against the run again
    (a phase may have finished since it was proposed). Returns the frozen file."""
    if proposal.version != run.journal.plan_version() + 1:
        raise InvalidInput("the plan was amended by someone else meanwhile; amend again from the new version")
    problem = refusal(run, proposal.loaded.spec)
    if problem is not None:
        raise InvalidInput(f"{run.run_dir.root}: cannot amend the plan: {problem}")
    path = run.run_dir.plan(proposal.version)
    atomic_write_text(path, proposal.loaded.text, mode=0o600)  # its env tables may hold secrets, as session.toml
    journal = run.journal
    # Masked with the secrets of both versions: the diff quotes the old values and the new.
    journal.redactor = session_redactor(run.loaded.spec, dict(os.environ if environ is None else environ),
                                        proposal.loaded.spec)
    journal.record_amendment(version=proposal.version, path=path.name, sha256=proposal.loaded.sha256,
                             reason=proposal.reason, diff=proposal.diff, changes=list(proposal.changes),
                             phases=[(p.id, p.kind) for p in proposal.loaded.spec.phases])
    run.loaded = replace(proposal.loaded, path=run.loaded.path)
    return path


def refusal(run: OpenRun, new: SessionSpec) -> str | None:
    """Why the run cannot take plan `new`; None when it can. Work done stays as it was done: completed phases
    keep their definition, order and place before every new phase; what they were made with (the model, the
    seed) stays; a phase that has run is never dropped."""
    old, journal = run.loaded.spec, run.journal
    if journal.session_state() == SessionState.COMPLETED:
        return "the run is complete; start a new run for more work"
    records = {p.id: p for p in journal.phases()}
    passed = [p.id for p in old.phases if records[p.id].state == PhaseState.PASSED]
    started = any(r.attempts for r in records.values())
    for key in FIXED_SESSION_KEYS:
        if getattr(old.session, key) != getattr(new.session, key):
            return f"session.{key} cannot change (it names the run); start a new run instead"
    if started and old.session.seed != new.session.seed:
        return "session.seed cannot change once a phase has run (that phase used it); start a new run instead"
    if passed and old.model != new.model:
        return (f"[model] cannot change: completed phase(s) {', '.join(passed)} were made with it; start a new "
                f"run instead")
    new_ids = [p.id for p in new.phases]
    if new_ids[: len(passed)] != passed:
        return (f"the completed phases {', '.join(passed)} must stay first, in their order (the new plan has "
                f"{', '.join(new_ids[: len(passed)]) or 'none'}); add or change only phases after them")
    for phase_id in passed:
        if old.phase(phase_id).model_dump() != new.phase(phase_id).model_dump():
            return f"phase {phase_id!r} is completed; its definition cannot change (amend only phases not yet done)"
    dropped = [p for p in records if p not in new_ids and records[p].attempts]
    if dropped:
        return f"phase(s) {', '.join(dropped)} have run and cannot leave the plan"
    running = next((p for p in old.phases if records[p.id].state == PhaseState.RUNNING), None)
    if running is not None and running.model_dump() != new.phase(running.id).model_dump():
        return (f"phase {running.id!r} is running and keeps the definition it started with; change it once it "
                f"ends, or stop the run first (`phasegate stop {run.run_dir.root}`), then amend and resume")
    return None


def _read_new_plan(path: Path) -> str:
    return load_spec(path).text  # a file that is not a valid session says so, naming the file and field


def _validated(run: OpenRun, text: str, version: int) -> LoadedSpec:
    """The text validated as `check` validates a session file, named as its frozen version for messages."""
    shown = run.run_dir.plan(version)
    staging = run.run_dir.root / f".{shown.name}.check"
    try:
        atomic_write_text(staging, text, mode=0o600)
        loaded = load_spec(staging, display_path=shown)
    finally:
        staging.unlink(missing_ok=True)
    loaded = replace(loaded, path=run.loaded.path)  # relative paths resolve where the session file was
    passed = frozenset(p.id for p in run.journal.phases() if p.state == PhaseState.PASSED)
    check_session(loaded, shown, done=passed)  # a completed phase never runs again: its command is not checked
    return loaded


def _with_values(text: str, sets: list[str]) -> str:
    """The plan's text with each `KEY=VALUE` set, its comments and layout kept."""
    document = tomlkit.parse(text)
    for assignment in sets:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--set {assignment!r}: write KEY=VALUE, e.g. --set session.budget_usd=60")
        _assign(document, key.strip(), _value(raw.strip()))
    text = tomlkit.dumps(document)
    return text if text.endswith("\n") else text + "\n"


def _value(raw: str) -> Any:
    """A TOML value (`60`, `true`, `"text"`, `[1, 2]`); anything else is taken as a string."""
    try:
        return tomlkit.parse(f"v = {raw}")["v"]
    except tomlkit.exceptions.ParseError:
        return raw


def _assign(document: Any, key: str, value: Any) -> None:
    """Set a dotted key: `session.budget_usd`, `model.path`, `reviewers.NAME.timeout_s`, `phases.ID.KEY`
    (a phase is named by its id, e.g. `phases.sft.with.learning_rate`)."""
    parts = key.split(".")
    table = document
    if parts[0] == "phases":
        if len(parts) < 3:
            raise InvalidInput(f"--set {key}: name a phase and a key, e.g. phases.sft.timeout_s=3600")
        phases = [p for p in document.get("phases", []) if p.get("id") == parts[1]]
        if not phases:
            known = ", ".join(str(p.get("id")) for p in document.get("phases", []))
            raise InvalidInput(f"--set {key}: no phase {parts[1]!r} in the plan; its phases are: {known}")
        table, parts = phases[0], parts[2:]
    for part in parts[:-1]:
        if part not in table:
            table[part] = tomlkit.table()
        table = table[part]
        if not isinstance(table, dict):
            raise InvalidInput(f"--set {key}: {part!r} is a value, not a table")
    table[parts[-1]] = value


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs, one line per key: `session.budget_usd: 50 -> 60` (phases by id)."""
    before, after = _flat(old), _flat(new)
    lines = [f"{key}: {_shown(before, key)} -> {_shown(after, key)}"
             for key in sorted(set(before) | set(after)) if before.get(key, _UNSET) != after.get(key, _UNSET)]
    return lines[:MAX_CHANGES_LISTED] + ([f"... and {len(lines) - MAX_CHANGES_LISTED} more"]
                                         if len(lines) > MAX_CHANGES_LISTED else [])


_UNSET = object()


def _shown(values: dict[str, Any], key: str) -> str:
    return repr(values[key]) if key in values else "(unset)"


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    if prefix == "phases." and isinstance(data, list):
        return {k: v for phase in data if isinstance(phase, dict)
                for k, v in _flat(phase, f"phases.{phase.get('id')}.").items()}
    return {prefix[:-1]: data}
