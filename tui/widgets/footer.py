"""The footer: the key bindings available in the run's current state."""

from __future__ import annotations

from textual.widgets import Footer


class KeyFooter(Footer):
    """Textual's footer without the command palette key: every action here has its own key."""

    def __init__(self) -> None:
        # Compact: with the view keys (log, files, chart) every key of a paused run fits 80 columns.
        super().__init__(show_command_palette=False, compact=True)
