"""Quitting a UI that started the session: stop the session, or leave it running headless."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from phasegate.tui.widgets.footer import KeyFooter


class QuitRunScreen(ModalScreen[str | None]):
    """Returns "stop", "leave", or None to keep watching."""

    BINDINGS = [Binding("s", "choose('stop')", "Stop session"), Binding("l", "choose('leave')", "Leave running"),
                Binding("escape", "choose(None)", "Cancel")]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.session_name = name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Quit — session {self.session_name} is still running", classes="dialog-title")
            yield Static("s  stop the session (asks for a reason; writes an incident report)\n"
                         "l  leave it running headless; `phasegate watch RUN_DIR` reattaches\n"
                         "esc  keep watching", classes="dialog-prompt")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop session", id="stop")
                yield Button("Leave running", id="leave")
                yield Button("Cancel", id="cancel")
        yield KeyFooter()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
