"""The frozen results of a review: per-attempt records and the outcome a gate consumes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phasegate.reviews.decision import Decision, Verdict
from phasegate.reviews.parse import COST_UNKNOWN, ReviewerOutput
from phasegate.reviews.process import ProcessResult


@dataclass(frozen=True)
class TokenUsage:
    """Tokens a review used over all its attempts (None where the CLI reports none)."""

    input: int | None = None
    output: int | None = None


@dataclass(frozen=True)
class ReviewOutcome:
    """The result of one review as the gate sees it; `error` set means fail closed."""

    decision: Decision
    reasons: tuple[str, ...]
    changes: Mapping[str, Any]
    error: str | None
    cost_usd: float | None
    tokens: TokenUsage
    duration_s: float
    out_dir: Path
    repo_modified: bool = False
    attempts: int = 1
    cost_unknown: bool = False
    """True when an attempt used tokens but no price is set: `cost_usd` then leaves it out, it is not $0."""

    @property
    def is_reviewer_error(self) -> bool:
        """True when the reviewer produced no valid answer (the gate must not pass on it)."""
        return self.error is not None


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt: its argv, process result, parsed output, cost and transient cause."""

    number: int
    argv: tuple[str, ...]
    result: ProcessResult
    output: ReviewerOutput | None
    last_message: str | None
    transient: str | None
    cost_usd: float | None
    cost_source: str | None


def _total(values: Sequence[float | int | None]) -> Any:
    """Sum of the known values, None when none is known or the sum is no finite number (never an infinite bill)."""
    known = [v for v in values if v is not None]
    total = sum(known) if known else None
    return None if isinstance(total, float) and not math.isfinite(total) else total


def build_outcome(
    records: Sequence[AttemptRecord],
    verdict: Verdict,
    *,
    out_dir: Path,
    duration_s: float,
    repo_modified: bool,
) -> ReviewOutcome:
    """The outcome of all attempts: the final verdict, with cost and tokens summed."""
    return ReviewOutcome(
        decision=verdict.decision,
        reasons=tuple(verdict.reasons),
        changes=verdict.changes,
        error=verdict.error,
        cost_usd=_total([r.cost_usd for r in records]),
        tokens=TokenUsage(
            _total([r.output.tokens_in if r.output else None for r in records]),
            _total([r.output.tokens_out if r.output else None for r in records]),
        ),
        duration_s=duration_s,
        out_dir=out_dir,
        repo_modified=repo_modified,
        attempts=len(records),
        cost_unknown=any(r.cost_source == COST_UNKNOWN for r in records),
    )
