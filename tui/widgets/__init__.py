"""The main screen's panels, one widget per file; each takes the run view through `data_bind`."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


def set_text(static: Static, text: str, *, layout: bool = False) -> None:
    """Show plain `text` (no markup) in a Static, touching it only when the text changed.

    An unchanged update still repaints, and with `layout` re-lays out the screen: once a second on an
    idle run that was most of the UI's terminal output.
    """
    if str(static.content) != text:
        static.update(Text(text), layout=layout)
