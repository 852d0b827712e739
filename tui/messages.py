"""Messages the app's workers post to the UI thread."""

from __future__ import annotations

from textual.message import Message

from phasegate.tui.view import RunView


class ViewSampled(Message):
    """A fresh view of the run from the sampler worker."""

    def __init__(self, view: RunView) -> None:
        super().__init__()
        self.view = view

    def can_replace(self, message: Message) -> bool:
        # Each view carries the whole state and the feed's tail, so a newer one makes an unread one useless.
        return isinstance(message, ViewSampled)


class ReaderTrouble(Message):
    """The sampler could not read the run, or a controller this UI started failed (it keeps watching)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class CommandDone(Message):
    """An operator command finished; `result` says what the core did."""

    def __init__(self, result: str, *, then_exit: bool = False, failed: bool = False) -> None:
        super().__init__()
        self.result = result
        self.then_exit = then_exit
        self.failed = failed


class TextLoaded(Message):
    """A file (or several) read for a text view."""

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title = title
        self.text = text
