"""The header: session, state, elapsed time, controller, mode and run folder."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from phasegate.tui.format import clock_text, fit_left, session_label
from phasegate.tui.reader import RunView


class RunHeader(Widget):
    """Two lines saying which run this is and where it stands."""

    view: reactive[RunView | None] = reactive(None)
    """The latest view of the run (bound to the app's)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def render(self) -> Text:
        if self.view is None:
            return Text("phasegate · reading the journal…")
        snap, width = self.view.snapshot, max(self.size.width, 20)
        controller = "controller live" if snap.controller_live else "no controller"
        plan = f" · plan v{snap.plan_version}" if snap.plan_version > 1 else ""  # amended: say which plan runs
        first = Text.assemble(("phasegate", "bold"), f" · {snap.name} · ",
                              (session_label(snap.state), "bold reverse"),
                              f" · elapsed {clock_text(self.view.elapsed_s)} · {controller}{plan} · {self.mode}")
        first.truncate(width, overflow="ellipsis")
        reason = f"{snap.reason} · " if snap.reason else ""
        second = Text(reason + fit_left(str(snap.run_dir), max(10, width - len(reason))))
        second.truncate(width, overflow="ellipsis")
        return Text.assemble(first, "\n", second)
