"""The gate contract: a gate kind checks a context with its parsed options and returns a GateResult."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from pydantic import BaseModel

from phasegate.floor.rundir import Placeholders, RunDir
from phasegate.floor.states import GateStatus, Route
from phasegate.gates.parsing import parse_options
from phasegate.journal.records import ReviewRecord

__all__ = ["GATE_KINDS", "Gate", "GateContext", "GateFactory", "GateResult", "GateStatus", "InvalidGate", "ReviewLog",
           "invalid_options_result", "register"]

OptionsT = TypeVar("OptionsT", bound=BaseModel)


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate evaluation, with the evidence that backs it."""

    status: GateStatus
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    # Only reviewer gates route: RETRY (apply `changes`, run the phase again) or STOP (early stop).
    route: Route | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)


class ReviewLog(Protocol):
    """The journal's record of one gate's reviewer call for one phase attempt: what makes a reviewer billed once."""

    def recorded(self) -> ReviewRecord | None:
        """The call already asked (answered, or cut short by a crash), if any."""

    def asked(self) -> None:
        """Commit that the reviewer is being asked, before its CLI starts."""

    def answered(self, answer: Mapping[str, Any], audit: Mapping[str, str], cost_usd: float | None) -> None:
        """Commit the answer the gate trusts, the sha256 of its audit files and its cost."""

    def artifacts(self) -> Mapping[str, str]:
        """The journaled sha256 of the phase's artifacts, by path (relative to the run folder, or absolute)."""


@dataclass(frozen=True)
class GateContext:
    """What a gate may look at: the run's folders and the phase it guards."""

    gate_id: str
    phase_id: str
    options: Mapping[str, Any]  # as written; a gate built from its declaration holds them parsed
    session_dir: Path
    run_dir: Path
    artifacts_dir: Path
    attempt: int = 1
    reviewers: Mapping[str, Any] = field(default_factory=dict)  # name -> ReviewerSpec, for `review` gates
    tunable: tuple[str, ...] = ()  # parameters of the phase a reviewer's ITERATE may change
    history: Mapping[str, Any] = field(default_factory=dict)  # metrics, earlier attempts, checkpoint text
    budget: Mapping[str, Any] = field(default_factory=dict)  # money left, rate, projected hours, for `budget` gates
    review_log: ReviewLog | None = None  # for `review` gates; None outside a run (nothing to bill twice)

    def resolve(self, path: str) -> Path:
        """Resolve a path from the session file: `{artifacts}`-style placeholders, then relative to the session folder."""
        values = Placeholders(run_dir=self.run_dir, artifacts=self.artifacts_dir, phase=self.phase_id,
                              session_dir=self.session_dir, state=RunDir(self.run_dir).state(self.phase_id))
        candidate = Path(path.format(**values._asdict()))
        return candidate if candidate.is_absolute() else self.session_dir / candidate


def invalid_options_result(error: ValueError) -> GateResult:
    """The result of a gate whose options do not validate: a failure, so a broken gate never passes."""
    return GateResult(
        status=GateStatus.FAIL,
        summary=str(error),
        evidence={"error": str(error)},
    )


class Gate(Generic[OptionsT]):
    """Base class of gate kinds: a kind sets `kind` and `options_model` and implements `check`.

    The properties below are what the controller asks of a gate; a kind answers them from its options.
    """

    kind: ClassVar[str]
    options_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, options: OptionsT | None = None) -> None:
        # None: a gate made bare parses the options of each context it evaluates.
        self.options = options

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """This kind with `options` parsed by its model (the one place they are parsed); ValueError names each bad field."""
        if cls.options_model is None:  # a kind without a model reads its context's options itself
            return cls()
        return cls(parse_options(cls.kind, cls.options_model, options))

    def evaluate(self, context: GateContext) -> GateResult:
        """Check the context with the parsed options; options that do not parse fail the gate (fail closed)."""
        try:
            gate = self if self.options is not None else self.from_options(context.options)
        except ValueError as exc:
            return invalid_options_result(exc)
        return self.check(gate.options, context)

    def check(self, options: OptionsT, context: GateContext) -> GateResult:  # pragma: no cover - interface
        """What this kind decides for one context, given its parsed options."""
        raise NotImplementedError

    @property
    def costly(self) -> bool:
        """Whether a failed or pending decision is reused after a restart rather than asked again."""
        return False

    @property
    def rechecks_every_phase(self) -> bool:
        """Whether the controller runs this gate again before every later phase."""
        return False

    @property
    def advises_on_failure(self) -> bool:
        """Whether it still runs, as advice only, after a hard gate of its stage failed."""
        return False

    @property
    def needs_history(self) -> bool:
        """Whether its context must carry the run's history (metrics, earlier attempts, checkpoint)."""
        return False

    @property
    def runs_after_hard_gates(self) -> bool:
        """Whether it is a reviewer that must see the hard gates of its stage decided first."""
        return False

    @property
    def reviewer_names(self) -> tuple[str, ...]:
        """The `[reviewers.<name>]` tables it asks, which the session file must define."""
        return ()


class InvalidGate(Gate):
    """A declaration whose kind or options do not parse: evaluating it fails, so it never passes."""

    kind: ClassVar[str] = "invalid"

    def __init__(self, error: ValueError) -> None:
        super().__init__()
        self.error = error

    def evaluate(self, context: GateContext) -> GateResult:
        """Fail with the parse error, whatever the context."""
        return invalid_options_result(self.error)


GATE_KINDS: dict[str, type[Gate]] = {}


def register(cls: type[Gate]) -> type[Gate]:
    """Class decorator that makes a gate kind available by its `kind` name."""
    GATE_KINDS[cls.kind] = cls
    return cls


GateFactory = Callable[[], Gate]
