"""The current phase's log, full screen: its end, followed as it grows, filtered by a search."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, RichLog, Static

from phasegate.tui.reader import RunReader
from phasegate.tui.view import LogTail, RunView
from phasegate.tui.widgets import set_text
from phasegate.tui.widgets.current_phase import stamp
from phasegate.tui.widgets.footer import KeyFooter

MAX_SHOWN = 5000


class LogRead(Message):
    """The log's end as read by the screen's worker."""

    def __init__(self, tail: LogTail) -> None:
        super().__init__()
        self.tail = tail

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LogRead)  # each carries the whole tail


def matching(tail: LogTail, query: str) -> list[str]:
    """The tail's lines containing `query` (any case), each after the time it was written."""
    wanted = query.casefold()
    return [f"{stamp(ts)} {text}" for ts, text in tail.lines if wanted in text.casefold()][-MAX_SHOWN:]


class LogScreen(Screen[None]):
    """Shows logs/<phase>.log as it grows; / searches (only matching lines are shown), escape returns."""

    BINDINGS = [Binding("escape", "close", "Back"), Binding("q", "close", "Back"),
                Binding("slash", "search", "Search"), Binding("end", "follow", "Follow")]

    def __init__(self, reader: RunReader, phase_id: str) -> None:
        super().__init__()
        self.reader = reader
        self.phase_id = phase_id
        self._tail = LogTail(-1, ())
        self._shown: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="text-title")
        yield Input(placeholder="search: type to show only matching lines (enter: back to the log)", id="log-search")
        yield RichLog(max_lines=MAX_SHOWN, wrap=False, markup=False, auto_scroll=False, id="log-lines")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = False  # no blinking cursor in screenshots
        self.query_one(RichLog).focus()
        self.watch(self.app, "view", self._view_changed)

    def _view_changed(self, view: RunView | None) -> None:
        self._read(self._tail.size)

    @work(thread=True, exclusive=True, group="log", exit_on_error=False)
    def _read(self, known_size: int) -> None:
        tail = self.reader.log_tail(self.phase_id, known_size=known_size)
        if tail is not None:
            self.post_message(LogRead(tail))

    @on(LogRead)
    def _read_done(self, message: LogRead) -> None:
        self._tail = message.tail
        self._render_lines()

    @on(Input.Changed, "#log-search")
    def _render_lines(self) -> None:
        query = self.query_one(Input).value
        lines = matching(self._tail, query)
        log = self.query_one(RichLog)
        follow = log.scroll_offset.y >= log.max_scroll_y  # at the end: stay there as lines come
        if lines[:len(self._shown)] == self._shown and self._shown:
            new = lines[len(self._shown):]  # the usual case: the log only grew
        else:
            log.clear()
            new = lines
        for line in new:
            log.write(Text(line), scroll_end=follow)
        self._shown = lines
        found = f" · {len(lines)} of {len(self._tail.lines)} lines match {query!r}" if query else ""
        set_text(self.query_one("#text-title", Static),
                 f"Log of {self.phase_id} · {len(self._tail.lines)} lines (its end){found} · / search · end follows")

    @on(Input.Submitted, "#log-search")
    def _searched(self) -> None:
        self.query_one(RichLog).focus()

    def action_search(self) -> None:
        self.query_one(Input).focus()

    def action_follow(self) -> None:
        self.query_one(RichLog).scroll_end(animate=False)

    def action_close(self) -> None:
        search = self.query_one(Input)
        if search.has_focus and search.value:  # escape in a search clears it first
            search.value = ""
            self.query_one(RichLog).focus()
            return
        self.dismiss(None)
