"""`target_kept` runs: generate in rounds until enough rows are kept, each round planned from the acceptance
measured so far, up to a hard cap; what the run reached goes into qc_summary.json.

Imports nothing heavy, so the controller's budget projection (session/runs.py) plans candidates as the phases do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A round asks for this much more than the acceptance measured so far says is missing, so one more
# round (with its model time) is rarely needed for the last few rows.
SAFETY_MARGIN = 0.1
# `max_candidates` defaults to this many times `target_kept`: an acceptance under 1/3 stops the phase.
DEFAULT_CAP_FACTOR = 3


class TargetFields(BaseModel):
    """The `target_kept` / `max_candidates` parameters the pilot and scale share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_kept: int | None = Field(
        None,
        ge=1,
        description="Generate until at least this many rows are kept after the duplicate filter (across all "
        "shards for scale): each next round's candidates are planned from the acceptance (kept / candidates) "
        f"measured so far, plus {SAFETY_MARGIN:.0%}, up to `max_candidates`. Unset: exactly `count` candidates.",
    )
    max_candidates: int | None = Field(
        None,
        ge=1,
        description=f"With `target_kept`: never generate more candidates than this (default "
        f"{DEFAULT_CAP_FACTOR} x target_kept); stopping short of the target fails the QC rule "
        "`target_reached == 1`, with the reason in qc_summary.json's `stop_reason`.",
    )

    @model_validator(mode="after")
    def _cap_needs_a_target(self) -> TargetFields:
        if self.max_candidates is not None and self.target_kept is None:
            raise ValueError("max_candidates caps a `target_kept` run; set target_kept too, or drop it")
        return self

    @property
    def candidate_cap(self) -> int | None:
        """The most candidates a `target_kept` run may generate; None without a target."""
        return candidate_cap(self.target_kept, self.max_candidates)


def candidate_cap(target_kept: int | None, max_candidates: int | None) -> int | None:
    """`max_candidates`, else DEFAULT_CAP_FACTOR x `target_kept`; None without a target."""
    if target_kept is None:
        return None
    return max_candidates or DEFAULT_CAP_FACTOR * target_kept


def next_round(
    target: int, n_kept: int, n_candidates: int, cap: int, first: int, multiple: int = 1
) -> int:
    """Candidates the next round of a `target_kept` run generates; 0 when it is done.

    Done when the target is reached or the cap is. The first round is `first`; later ones are what
    is missing over the acceptance measured so far, plus the safety margin (the rest of the cap
    when nothing was kept yet), rounded up to a `multiple` (whole batches), never past the cap.
    """
    if n_kept >= target or n_candidates >= cap:
        return 0
    if n_candidates == 0:
        want = first
    elif n_kept == 0:
        want = cap
    else:
        want = math.ceil((target - n_kept) * (1 + SAFETY_MARGIN) * n_candidates / n_kept)
    want = -(-want // multiple) * multiple
    return max(1, min(want, cap - n_candidates))


def target_metrics(target: int | None, cap: int | None, n_kept: int, n_candidates: int) -> dict[str, Any]:
    """What a `target_kept` run reached and why it stopped; nothing without a target.

    `target_reached` is 1 or 0, not a boolean: the `threshold` gate compares numbers only.
    """
    if target is None or cap is None:
        return {}
    reached = n_kept >= target
    if reached:
        reason = f"target reached: {n_kept} rows kept of target_kept {target} ({n_candidates} candidates)"
    else:
        reason = (f"max_candidates {cap} reached with {n_kept} rows kept of target_kept {target} "
                  f"(acceptance {n_kept / max(n_candidates, 1):.1%}); raise max_candidates or fix "
                  "what the critics reject")
    return {"target_kept": target, "max_candidates": cap, "target_reached": int(reached),
            "stop_reason": reason}


@dataclass
class PilotRun:
    """What the batches gave: every row (repeats un-kept), which batches ran, and the time they took."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    batches: dict[str, list[int]] = field(default_factory=lambda: {"generated": [], "reused": []})
    rounds: list[int] = field(default_factory=list)  # candidates planned per round
    gen_s: float = 0.0  # generation and critic time of the batches generated (model load excluded)
    generated: int = 0  # candidates of those batches

    @property
    def n_kept(self) -> int:
        return sum(bool(r["kept"]) for r in self.rows)


def plan_next_round(params: Any, n_kept: int, n_candidates: int) -> int:
    """Candidates of the pilot's next round (`params`: its GenerateParams): `count` once without a target, else
    from the acceptance so far, in whole batches."""
    if params.target_kept is None:
        return 0 if n_candidates else params.count
    return next_round(params.target_kept, n_kept, n_candidates, params.candidate_cap,
                      params.first_round, params.batch_size)
