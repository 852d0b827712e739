"""A full-screen, scrollable view of a text file: a review's prompt and output, the checkpoint, an incident."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from phasegate.tui.widgets.footer import KeyFooter


class TextViewScreen(Screen[None]):
    """Shows text as it is (no markup is interpreted); q or escape returns to the run."""

    BINDINGS = [Binding("escape", "close", "Back"), Binding("q", "close", "Back")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.view_title = title
        self.text = text

    def compose(self) -> ComposeResult:
        yield Static(Text(self.view_title, style="bold"), id="text-title")
        with VerticalScroll(id="text-scroll"):
            yield Static(Text(self.text), id="text-body")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#text-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)
