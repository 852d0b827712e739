"""Approve a gate that waits for an operator, with an optional note."""

from __future__ import annotations

from phasegate.tui.screens.reason import ReasonDialog


class ApproveScreen(ReasonDialog):
    """Confirm an approval; the note is optional and kept in the journal."""

    def __init__(self, gate_id: str, message: str) -> None:
        super().__init__(f"Approve gate {gate_id}?", f"{message}\nNote (optional):", required=False,
                         placeholder="what you checked")
