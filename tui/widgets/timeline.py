"""The phase timeline: each phase with its state, attempts, duration and cost; the current one highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from phasegate.tui.format import PHASE_MARKS, clock_text, eta_text, short_money
from phasegate.tui.view import RunView

FIXED_COLUMNS = 28  # mark, state, attempts, duration, cost and the spaces between them


class Timeline(Widget):
    """One line per phase: symbol, id, state word, attempts, duration (pauses left out) and cost so far;
    under a running phase with progress, its ETA."""

    view: reactive[RunView | None] = reactive(None)
    """The latest view of the run (bound to the app's)."""

    def render(self) -> Text:
        if self.view is None:
            return Text("")
        view, current = self.view, self.view.current_phase
        id_width = max(6, self.size.width - FIXED_COLUMNS)
        out = Text()
        for phase in view.snapshot.phases:
            word, duration = view.phase_word(phase), view.phase_elapsed(phase)
            line = (f"{PHASE_MARKS.get(word, '?')} {phase.id:<{id_width}.{id_width}} {word:<7.7} "
                    f"{phase.attempts or '':>2} {clock_text(duration) if duration is not None else '':>7} "
                    f"{short_money(view.phase_cost(phase)):>6}")
            # Reverse video, not colour: the highlight survives a monochrome terminal.
            out.append(line + "\n", style="reverse" if current is not None and phase.id == current.id else "")
            eta = view.phase_eta(phase)
            if eta is not None:
                out.append(f"  └ eta {eta_text(eta)}\n")
        out.rstrip()
        return out
