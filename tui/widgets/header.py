"""The header: session, state, elapsed time, controller, mode and run folder."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from phasegate.tui.feed import hms
from phasegate.tui.format import clock_text, fit_left, session_label
from phasegate.tui.view import RunView

GONE_LABEL = "✗ CONTROLLER GONE"


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
        view, width = self.view, max(self.size.width, 20)
        snap = view.snapshot
        controller = "controller live" if snap.controller_live else "no controller"
        plan = f" · plan v{snap.plan_version}" if snap.plan_version > 1 else ""  # amended: say which plan runs
        # A dead controller's run still reads "running" in the journal: the header must not say so.
        label = GONE_LABEL if view.controller_gone else session_label(snap.state)
        first = Text.assemble(("phasegate", "bold"), f" · {snap.name} · ", (label, "bold reverse"),
                              f" · elapsed {clock_text(view.elapsed_s)} · {controller}{plan} · {self.mode}")
        first.truncate(width, overflow="ellipsis")
        reason = f"{snap.reason} · " if snap.reason else ""
        if view.controller_gone:
            reason = f"controller gone, last heard {hms(view.clock_end)} · press r to resume · "
        second = Text(reason + fit_left(str(snap.run_dir), max(10, width - len(reason))))
        second.truncate(width, overflow="ellipsis")
        return Text.assemble(first, "\n", second)
