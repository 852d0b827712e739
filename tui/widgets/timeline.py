"""The phase timeline: each phase with its state, attempts and duration; the current one highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from phasegate.tui.format import PHASE_MARKS, clock_text
from phasegate.tui.reader import RunView


def phase_duration(phase, now: float) -> float | None:
    """How long a phase ran, or has been running so far."""
    if phase.started_at is None:
        return None
    return (phase.ended_at if phase.ended_at is not None else now) - phase.started_at


class Timeline(Widget):
    """One line per phase: symbol, id, state word, attempts, duration."""

    view: reactive[RunView | None] = reactive(None)
    """The latest view of the run (bound to the app's)."""

    def render(self) -> Text:
        if self.view is None:
            return Text("")
        current = self.view.current_phase
        id_width = max(6, self.size.width - 21)  # what the state, attempts and duration columns leave
        out = Text()
        for phase in self.view.snapshot.phases:
            duration = phase_duration(phase, self.view.now) if phase.state != "pending" else None
            line = (f"{PHASE_MARKS.get(phase.state, '?')} {phase.id:<{id_width}.{id_width}} {phase.state:<7.7} "
                    f"{phase.attempts or '':>2} {clock_text(duration) if duration is not None else '':>7}")
            # Reverse video, not colour: the highlight survives a monochrome terminal.
            out.append(line + "\n", style="reverse" if current is not None and phase.id == current.id else "")
        out.rstrip()
        return out
