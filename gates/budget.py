"""Gate kind `budget`: refuse to start an expensive phase when its projected cost exceeds what is left."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from phasegate.gates.base import Gate, GateContext, GateResult, GateStatus
from phasegate.gates.options import GateOptions, gate_kind


class BudgetOptions(GateOptions):
    """Options of a `budget` gate (declare it in `pre_gates` of the phase it guards)."""

    include_remaining: bool = Field(False, description="Compare the projection of every phase left (not only this one) with what is left.")
    margin: float = Field(0.0, ge=0, le=1, description="Keep this fraction of the money left in reserve, e.g. 0.1.")


@gate_kind
class BudgetGate(Gate[BudgetOptions]):
    """Passes when the phase's projected cost fits in the budget left (with the margin)."""

    kind: ClassVar[str] = "budget"
    options_model: ClassVar[type[BudgetOptions]] = BudgetOptions

    def check(self, options: BudgetOptions, context: GateContext) -> GateResult:
        """Compare the projection from the phase estimate (or measured throughput) with the money left."""
        budget = context.budget
        left, rate = budget.get("left_usd"), budget.get("gpu_hourly_usd")
        hours = budget.get("remaining_hours") if options.include_remaining else budget.get("phase_hours")
        evidence = {"left_usd": left, "gpu_hourly_usd": rate, "projected_hours": hours, "margin": options.margin}
        if left is None:
            return GateResult(GateStatus.PASS, "no budget_usd set; nothing to check", evidence)
        if rate is None or hours is None:
            return GateResult(GateStatus.WARN, "no GPU rate or no estimate for this phase; cannot project its cost "
                              "(set gpu_hourly_usd and estimate_min)", evidence)
        projected, usable = hours * rate, left * (1 - options.margin)
        evidence.update(projected_usd=round(projected, 4), usable_usd=round(usable, 4))
        metrics = {"projected_usd": projected, "left_usd": left}
        if projected > usable:
            return GateResult(GateStatus.FAIL, f"projected ${projected:.2f} exceeds the ${usable:.2f} left by "
                              f"${projected - usable:.2f}", evidence, metrics)
        return GateResult(GateStatus.PASS, f"projected ${projected:.2f} fits in the ${usable:.2f} left", evidence, metrics)
