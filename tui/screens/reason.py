"""A modal dialog asking for a line of text (a reason or a note) before an operator command."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from phasegate.tui.widgets.footer import KeyFooter


class ReasonDialog(ModalScreen[str | None]):
    """Returns the text typed (enter), or None when cancelled (escape); may require non-empty text."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, prompt: str, *, required: bool, placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.prompt = prompt
        self.required = required
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            yield Static(self.prompt, classes="dialog-prompt")
            # No blinking cursor: it would make screenshots differ from run to run.
            yield Input(placeholder=self.placeholder, id="reason")
            yield Static("", id="reason-error", classes="dialog-error")
            yield Static("enter: confirm · esc: cancel", classes="dialog-hint")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = False

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if self.required and not text:
            self.query_one("#reason-error", Static).update("A reason is required (it is recorded in the journal).")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
