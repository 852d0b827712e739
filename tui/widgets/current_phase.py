"""The current phase: what it is doing, a progress bar from its progress events, and the live log."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import ProgressBar, RichLog, Static

from phasegate.tui.feed import hms
from phasegate.tui.format import clock_text, eta_text
from phasegate.tui.view import RunView
from phasegate.tui.widgets import set_text

LOG_LINES = 500


def stamp(ts: float | None) -> str:
    """When a feed line was written; dashes for a log line the runner's index does not date."""
    return "--:--:--" if ts is None else hms(ts)


def phase_title(view: RunView) -> str:
    """`<id> · <STATE> · <duration> · eta · <step>` for the current phase (attempt n when it is a retry)."""
    phase = view.current_phase
    if phase is None:
        return "no phases"
    parts = [phase.id, view.phase_word(phase).upper()]
    if phase.attempts > 1:
        parts.append(f"attempt {phase.attempts}")
    if phase.state != "pending":
        parts.append(clock_text(view.phase_elapsed(phase)))
    if (eta := view.phase_eta(phase)) is not None:
        parts.append(f"eta {eta_text(eta)}")
    if phase.progress_step:
        parts.append(phase.progress_step)
    if phase.error:
        parts.append(phase.error)
    return " · ".join(parts)


class CurrentPhase(Vertical):
    """Title line, progress bar (when the phase reports progress) and the journal/stdout feed."""

    view: reactive[RunView | None] = reactive(None)
    """The latest view of the run (bound to the app's)."""

    def __init__(self) -> None:
        super().__init__()
        self._shown = 0  # the last feed entry written to the log

    def compose(self) -> ComposeResult:
        yield Static("", id="phase-title")
        yield Static("no progress reported", id="phase-noprogress")
        # show_eta off: an ETA needs a live clock, which the frozen-clock snapshots must not have.
        yield ProgressBar(total=1, show_eta=False, id="phase-progress")
        yield RichLog(max_lines=LOG_LINES, wrap=False, markup=False, id="phase-log")

    def watch_view(self, view: RunView | None) -> None:
        if view is None:
            return
        set_text(self.query_one("#phase-title", Static), phase_title(view))
        phase = view.current_phase
        progress = phase.progress if phase is not None else None
        bar = self.query_one("#phase-progress", ProgressBar)
        bar.display = progress is not None
        self.query_one("#phase-noprogress", Static).display = progress is None
        if progress is not None:
            bar.update(total=max(progress[1], 1), progress=min(progress[0], progress[1]))
        self._write_feed(view)

    def _write_feed(self, view: RunView) -> None:
        log = self.query_one("#phase-log", RichLog)
        for line in view.feed:
            if line.n > self._shown:
                log.write(Text(f"{stamp(line.ts)} {line.text}"))
                self._shown = line.n
