"""Waive a failed or pending gate; the reason is required and recorded forever."""

from __future__ import annotations

from phasegate.tui.screens.reason import ReasonDialog


class WaiveScreen(ReasonDialog):
    """Ask for the waiver's reason (required) for one gate."""

    def __init__(self, gate_id: str, status: str) -> None:
        super().__init__(
            f"Waive gate {gate_id} ({status})?",
            "A waiver lets the session go past this gate. It is recorded in the journal and shown in every "
            "later checkpoint. Reason (required):",
            required=True, placeholder="why this gate may be passed")
