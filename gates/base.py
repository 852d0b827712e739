"""The gate contract: a gate kind evaluates a context and returns a GateResult."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


class GateStatus(enum.StrEnum):
    """What a gate decided; `waived` is only ever set by an operator."""

    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    PENDING = "pending"
    WAIVED = "waived"


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate evaluation, with the evidence that backs it."""

    status: GateStatus
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    # Only reviewer gates route: "retry" (apply `changes`, run the phase again) or "stop" (early stop).
    route: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateContext:
    """What a gate may look at: the run's folders and the phase it guards."""

    gate_id: str
    phase_id: str
    options: Mapping[str, Any]
    session_dir: Path
    run_dir: Path
    artifacts_dir: Path
    attempt: int = 1
    reviewers: Mapping[str, Any] = field(default_factory=dict)  # name -> ReviewerSpec, for `review` gates
    tunable: tuple[str, ...] = ()  # parameters of the phase a reviewer's ITERATE may change
    history: Mapping[str, Any] = field(default_factory=dict)  # metrics, earlier attempts, checkpoint text
    budget: Mapping[str, Any] = field(default_factory=dict)  # money left, rate, projected hours, for `budget` gates

    def resolve(self, path: str) -> Path:
        """Resolve a path from the session file: `{artifacts}`-style placeholders, then relative to the session folder."""
        expanded = path.format(
            artifacts=self.artifacts_dir,
            run_dir=self.run_dir,
            session_dir=self.session_dir,
            phase=self.phase_id,
        )
        candidate = Path(expanded)
        return candidate if candidate.is_absolute() else self.session_dir / candidate


class Gate:
    """Base class of gate kinds; subclasses set `kind` and implement `evaluate`."""

    kind: ClassVar[str]

    def evaluate(self, context: GateContext) -> GateResult:  # pragma: no cover - interface
        raise NotImplementedError


GATE_KINDS: dict[str, type[Gate]] = {}


def register(cls: type[Gate]) -> type[Gate]:
    """Class decorator that makes a gate kind available by its `kind` name."""
    GATE_KINDS[cls.kind] = cls
    return cls


GateFactory = Callable[[], Gate]
