"""The session file: pydantic models for the TOML a user writes, and the loader that validates it."""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from phasegate.floor.errors import SpecError
from phasegate.floor.reading import read_regular_file
from phasegate.pipeline.model.spec import ModelSpec
from phasegate.reviews.config import ReviewerSpec
from phasegate.session.notify_spec import HookSpec, NotifySpec
from phasegate.session.placeholders import (
    PLACEHOLDERS,
    check_placeholders,
    check_unfilled,
)
from phasegate.session.pod_spec import PodSpec
from phasegate.session.spec_errors import closest, describe_problem, describe_validation_error

if TYPE_CHECKING:
    from phasegate.gates.base import Gate

BUILTIN_PHASE_KINDS = ("versions", "load_check", "baseline_eval", "generate", "scale", "testset", "sft", "evaluate")
PHASE_KINDS = ("command", *BUILTIN_PHASE_KINDS)
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
# Ids and names become file and folder names (artifacts/<phase>, reviews/<gate>-<n>, runs/<name>-<stamp>):
# bounded well below the 255 bytes a file name may have.
MAX_ID_LENGTH = 64
MAX_GATE_ID_LENGTH = 100
# Bounds on the file itself: no value phasegate reads needs more, and a deeper or longer one is a mistake.
MAX_SPEC_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_STRING_LENGTH = 1 << 16
ENV_KEY_PATTERN = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SessionInfo(_Strict):
    """The `[session]` table: who this session is and what it may spend."""

    name: str = Field(pattern=r"^[a-z0-9-]+$", max_length=MAX_ID_LENGTH, description="Session name, lowercase letters, digits and dashes; names the run folder.")
    description: str = Field("", description="One line saying what this session is for; shown in checkpoints.")
    budget_usd: float | None = Field(None, gt=0, description="Money this session may spend in US dollars; the session stops when it is used up.")
    gpu_hourly_usd: float | None = Field(None, ge=0, description="What the GPU costs per hour in US dollars, for the budget ledger.")
    seed: int = Field(0, description="Session seed; built-in phases derive their own seeds from it unless a phase sets `seed`.")
    gpu: str | None = Field(None, description="GPU model for the built-in price table when `gpu_hourly_usd` is not set, e.g. \"H100\" (else the name NVML reports is used).")
    budget_warn_at: float = Field(0.8, gt=0, le=1, description="Fraction of `budget_usd` at which a warning is raised; at 1.0 the session stops.")
    release_when_paused: bool = Field(False, description="Deprecated and ignored (`check` warns): it only changed the accounting while the pod kept billing. Write a `[pod]` table to stop the pod while the session waits.")
    stall_timeout_s: float | None = Field(None, gt=0, description="Stop when a phase shows no event and no log output for this many seconds (a phase may set its own).")
    oom_memory_fraction: float = Field(0.98, gt=0, le=1, description="GPU memory use at or above this fraction, sustained for `oom_samples` samples, counts as out-of-memory.")
    oom_samples: int = Field(5, ge=1, description="How many consecutive 1 Hz samples at `oom_memory_fraction` trigger the out-of-memory stop.")
    ab_discrepancy_max: float = Field(0.02, ge=0, description="A phase metric `ab_discrepancy` above this stops the session (the reference's A/B check).")


class GateSpec(BaseModel):
    """One gate of a phase: `kind` picks the gate kind; every other key is that kind's option."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str | None = Field(None, pattern=ID_PATTERN.replace("_-", "_.-"), max_length=MAX_GATE_ID_LENGTH, description="Gate id used by `approve`/`waive`; defaults to `<phase>.<kind>` (with a number when a phase has several of one kind).")
    kind: str = Field(description="Gate kind: threshold, policy, artifact, approval, and others registered by phasegate.")

    @property
    def options(self) -> dict[str, Any]:
        """The kind-specific options (every key but `id` and `kind`)."""
        return dict(self.model_extra or {})

    @cached_property
    def gate(self) -> Gate:
        """The declared gate, its options parsed once; one that does not parse fails (load_spec refuses it)."""
        # Imported here, as load_spec always did: the registry loads every gate kind and the reviewers.
        from phasegate.gates import declare_gate

        return declare_gate(self.kind, self.options)


class PhaseSpec(_Strict):
    """One `[[phases]]` entry: a step of the session, run as a child process."""

    id: str = Field(pattern=ID_PATTERN, max_length=MAX_ID_LENGTH, description="Phase id, unique in the session: lowercase letters, digits, `_` and `-`.")
    kind: str = Field("command", description="`command` runs `run`; the built-in kinds are " + ", ".join(BUILTIN_PHASE_KINDS) + ".")
    run: list[str] = Field(default_factory=list, description="For `command` phases: the argv to run (no shell). Placeholders: " + ", ".join("{" + k + "}" for k in PLACEHOLDERS) + ".")
    timeout_s: float | None = Field(None, gt=0, description="Seconds the phase may run before it is ended and counted as failed.")
    stall_timeout_s: float | None = Field(None, gt=0, description="This phase's own stall limit (overrides the session's).")
    estimate_min: float | None = Field(None, gt=0, description="Expected minutes, for the budget projection (else a generation rate an earlier pilot or scale measured, then an earlier phase's wall time, is used where it applies).")
    retries: int = Field(0, ge=0, le=20, description="How many times a failed phase (or a failed gate after it) is run again before the session stops.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables for the child process.")
    params: dict[str, Any] = Field(default_factory=dict, alias="with", description="The `[phases.with]` table: parameters of a built-in phase.")
    tunable: list[str] = Field(default_factory=list, description="Parameters of `[phases.with]` a reviewer's ITERATE decision may change; any other change is rejected.")
    pre_gates: list[GateSpec] = Field(default_factory=list, description="Gates checked before the phase starts (`[[phases.pre_gates]]`).")
    gates: list[GateSpec] = Field(default_factory=list, description="Gates checked after the phase ends (`[[phases.gates]]`).")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in PHASE_KINDS:
            raise ValueError(f"unknown phase kind {kind!r}; write one of: {', '.join(PHASE_KINDS)}")
        return kind

    @field_validator("run")
    @classmethod
    def _placeholders_known(cls, run: list[str]) -> list[str]:
        for arg in run:
            check_placeholders(arg)
        if run and (run[0].strip() in ("", ".", "..") or run[0].endswith("/")):
            raise ValueError(f"{run[0]!r} is not a program; write the program first, "
                             'e.g. run = ["python3", "scripts/prepare.py"]')
        return run

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not ENV_KEY_PATTERN.match(key):
                raise ValueError(f"environment variable name {key!r} is not valid; use letters, digits and `_`, "
                                 "not starting with a digit (no `=`)")
            check_unfilled(value, f"env {key} = {value!r}")
        return env

    @field_validator("params")
    @classmethod
    def _params_unfilled(cls, params: dict[str, Any]) -> dict[str, Any]:
        stack: list[tuple[str, Any]] = [(key, value) for key, value in params.items()]
        while stack:  # a loop: `first_bad_value` bounds the depth, but a loop needs no bound
            where, value = stack.pop()
            if isinstance(value, str):
                check_unfilled(value, f"with.{where} = {value!r}")
            elif isinstance(value, dict | list):
                stack.extend((f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]", child)
                             for key, child in (value.items() if isinstance(value, dict) else enumerate(value)))
        return params

    @model_validator(mode="after")
    def _run_matches_kind(self) -> PhaseSpec:
        if self.kind == "command" and not self.run:
            raise ValueError("a `command` phase needs `run`, e.g. run = [\"python3\", \"scripts/prepare.py\"]")
        if self.kind != "command" and self.run:
            raise ValueError(f"a `{self.kind}` phase is built in and takes no `run`; put its parameters in [phases.with]")
        return self


class SessionSpec(_Strict):
    """A whole session file."""

    session: SessionInfo = Field(description="The `[session]` table.")
    model: ModelSpec | None = Field(None, description="The `[model]` table: the base model every built-in phase loads.")
    reviewers: dict[str, ReviewerSpec] = Field(default_factory=dict, description="`[reviewers.<name>]` tables: reviewer CLIs that `review` gates ask.")
    phases: list[PhaseSpec] = Field(min_length=1, description="The phases, run in order (`[[phases]]`).")
    notify: list[NotifySpec] = Field(default_factory=list, description="`[[notify]]` tables: where to send a message when the run pauses, stops, completes or warns.")
    hooks: list[HookSpec] = Field(default_factory=list, description="`[[hooks]]` tables: commands run on the same events.")
    pod: PodSpec | None = Field(None, description="The `[pod]` table: stop the pod phasegate runs on while nobody is needed there, so that it stops billing.")

    @model_validator(mode="after")
    def _unique_ids(self) -> SessionSpec:
        builtin = [p.id for p in self.phases if p.kind not in ("command", "versions")]
        if builtin and self.model is None:
            raise ValueError(f"phase(s) {', '.join(builtin)} load a model, but there is no [model] table; "
                             'add one, e.g. [model] path = "models/base"')
        for phase in self.phases:
            for gate in [*phase.pre_gates, *phase.gates]:
                for name in gate.gate.reviewer_names:
                    if name not in self.reviewers:
                        known = ", ".join(self.reviewers) or "none"
                        raise ValueError(f"phase {phase.id!r}: {gate.kind} gate asks reviewer {name!r}, but there is "
                                         f"no [reviewers.{name}] table (defined: {known})")
        seen: set[str] = set()
        for phase in self.phases:
            if phase.id in seen:
                raise ValueError(f"phase id {phase.id!r} is used twice; give each phase its own id")
            seen.add(phase.id)
        return self

    def phase(self, phase_id: str) -> PhaseSpec:
        """The phase with this id."""
        return next(p for p in self.phases if p.id == phase_id)


@dataclass(frozen=True)
class LoadedSpec:
    """A validated session file with the text and hash it came from."""

    spec: SessionSpec
    path: Path
    text: str
    sha256: str

    @property
    def session_dir(self) -> Path:
        """The folder of the session file; relative paths and child processes start here."""
        return self.path.parent


def load_spec(path: Path, *, display_path: Path | None = None) -> LoadedSpec:
    """Read and validate a session file, raising SpecError with file, line and field on any problem."""
    path = Path(path)
    shown = display_path or path
    try:
        raw = read_regular_file(path, max_bytes=MAX_SPEC_BYTES)
    except FileNotFoundError:
        raise SpecError(f"{shown}: no such session file; check the path (see examples/quickstart.toml)") from None
    except OSError as exc:
        raise SpecError(f"{shown}: cannot read the session file: {exc.strerror}") from None
    text = _decoded(raw, shown)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{shown}: not valid TOML: {exc}") from None
    except RecursionError:
        raise SpecError(f"{shown}: values are nested too deeply (at most {MAX_DEPTH} levels)") from None
    problem = first_bad_value(data)
    if problem is not None:
        raise SpecError(describe_problem(text, str(shown), *problem))
    try:
        spec = SessionSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(describe_validation_error(exc, text, str(shown), model=SessionSpec, data=data)) from None
    _check_gates(spec, text, str(shown))
    # The hash of the text as the run folder freezes it, so that the frozen copy always matches the journal.
    return LoadedSpec(spec=spec, path=path.resolve(), text=text, sha256=hashlib.sha256(text.encode()).hexdigest())


def _decoded(raw: bytes, shown: Path) -> str:
    """The file's text: UTF-8 as TOML requires (a byte order mark an editor put first is dropped)."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(f"{shown} line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8 text; a session file is "
                        f"UTF-8 (TOML requires it): save it as UTF-8") from None


def _string_problem(text: str, what: str) -> str | None:
    if "\0" in text:
        return f"{what} holds a NUL character (\\u0000), which no argument, path or name may hold; remove it"
    if len(text) > MAX_STRING_LENGTH:
        return f"{what} is {len(text)} characters long; at most {MAX_STRING_LENGTH} are allowed"
    return None


def _children(value: Any) -> list[tuple[str | int, Any]]:
    if isinstance(value, dict):
        return list(value.items())
    return list(enumerate(value)) if isinstance(value, list) else []


def first_bad_value(data: Any) -> tuple[tuple[str | int, ...], str] | None:
    """The location and problem of the first value no session may hold (too deep, too long, a NUL), if any."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while stack:  # a loop, not recursion: the data may be nested deeper than Python's stack allows
        loc, value = stack.pop()
        if len(loc) > MAX_DEPTH:
            return loc, f"nested more than {MAX_DEPTH} levels deep; flatten it"
        if isinstance(value, str) and (problem := _string_problem(value, "the value")):
            return loc, problem
        children = _children(value)
        for key, _ in children:
            if isinstance(key, str) and (problem := _string_problem(key, f"the key {key[:40]!r}")):
                return loc, problem
        stack.extend(((*loc, key), child) for key, child in reversed(children))
    return None


def _check_gates(spec: SessionSpec, text: str, shown: str) -> None:
    """Refuse a gate whose kind or options did not parse against the gate registry."""
    from phasegate.gates import InvalidGate

    for p_index, phase in enumerate(spec.phases):
        for table in ("pre_gates", "gates"):
            for g_index, gate in enumerate(getattr(phase, table)):
                if isinstance(gate.gate, InvalidGate):
                    raise SpecError(_gate_problem(phase, gate, ("phases", p_index, table, g_index), text, shown))


def _gate_problem(phase: PhaseSpec, gate: GateSpec, loc: tuple[str | int, ...], text: str, shown: str) -> str:
    """What is wrong with a gate declaration, at the line of the key that is wrong when pydantic can tell."""
    from phasegate.gates import GATE_KINDS, GATE_OPTION_MODELS

    if gate.kind not in GATE_KINDS:
        guess = closest(gate.kind, sorted(GATE_KINDS))
        return describe_problem(text, shown, (*loc, "kind"), f"unknown gate kind {gate.kind!r}; "
                                + (f"did you mean {guess!r}? " if guess else "") + f"known kinds: {', '.join(sorted(GATE_KINDS))}",
                                about=f"phase {phase.id!r}")
    model = GATE_OPTION_MODELS.get(gate.kind)
    try:
        if model is not None:
            model.model_validate(gate.options)
    except ValidationError as exc:
        return describe_validation_error(exc, text, shown, model=model, prefix=loc, extra_keys=("id", "kind"),
                                         about=f"phase {phase.id!r}, {gate.kind} gate")
    # The kind checks more than its model: its own words then.
    return describe_problem(text, shown, loc, str(gate.gate.error), about=f"phase {phase.id!r}, {gate.kind} gate")
