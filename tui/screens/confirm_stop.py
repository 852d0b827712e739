"""Confirm a stop and ask for its reason (it goes into the incident report)."""

from __future__ import annotations

from phasegate.tui.screens.reason import ReasonDialog


class ConfirmStopScreen(ReasonDialog):
    """Stop the session? Enter a reason to stop it; escape keeps it running."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Stop session {name}?",
            "The running phase is ended, the session is STOPPED and an incident report and a checkpoint are "
            "written; it can be resumed later. Reason (required):",
            required=True, placeholder="why stop now")
