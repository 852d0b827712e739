"""Gate kind `approval`: waits for an operator (the controller pauses; approve or waive decides)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from phasegate.gates.base import Gate, GateContext, GateResult, GateStatus
from phasegate.gates.options import GateOptions, gate_kind


class ApprovalOptions(GateOptions):
    """Options of an `approval` gate."""

    message: str = Field(
        default="Operator approval required to continue.",
        min_length=1,
        description="What the operator is asked to check before approving, shown in the status, the TUI and the checkpoint.",
    )


@gate_kind
class ApprovalGate(Gate[ApprovalOptions]):
    """Always pending: only an operator's approve or waive command decides it."""

    kind: ClassVar[str] = "approval"
    options_model: ClassVar[type[ApprovalOptions]] = ApprovalOptions

    def check(self, options: ApprovalOptions, context: GateContext) -> GateResult:
        """Ask for approval with the options' message."""
        evidence = {
            "message": options.message,
            "phase": context.phase_id,
            "attempt": context.attempt,
        }
        return GateResult(GateStatus.PENDING, options.message, evidence)
