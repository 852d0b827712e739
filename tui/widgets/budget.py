"""The budget panel: spent and left against the allocation, burn rate, projected total, time left and ETAs."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import ProgressBar, Static

from phasegate.tui.format import eta_text, hours, money, rate
from phasegate.tui.view import RunView
from phasegate.tui.widgets import set_text


def budget_lines(budget: dict[str, Any]) -> tuple[str, str]:
    """The spent line and the burn line; the burn figures are a dash when the budget does not carry them."""
    if budget.get("spent_usd") is None:
        return "budget: cost not tracked (no gpu_hourly_usd)", ""
    allocation, left = budget.get("allocation_usd"), budget.get("left_usd")
    spent = f"spent {money(budget['spent_usd'])}" + (f" of {money(allocation)}" if allocation is not None else "")
    if left is not None:
        spent += " · OVER BUDGET" if left < 0 else f" · left {money(left)}"
    spent += f" · GPU {rate(budget.get('gpu_hourly_usd'))}"
    burn = (f"burn {rate(budget.get('burn_rate_usd_h'))} · proj {money(budget.get('projected_total_usd'))}"
            f" · left {hours(budget.get('time_left_h'))}")
    return spent, burn


def eta_line(view: RunView) -> str:
    """The running phase's ETA and the session's (a lower bound while later phases have no estimate)."""
    running = view.snapshot.running
    if running is None:
        return "eta: no phase running"
    if view.controller_gone:
        return "eta: none, the controller is gone (r resumes)"
    eta, unknown = view.session_eta
    later = f" (+{unknown} phase{'s' if unknown > 1 else ''})" if unknown and eta is not None else ""
    return f"eta {running['phase']} {eta_text(eta)} · session {eta_text(eta, unknown)}{later}"


class BudgetPanel(Vertical):
    """What the session has cost and where it is heading, from the snapshot's budget figures."""

    view: reactive[RunView | None] = reactive(None)
    """The latest view of the run (bound to the app's)."""

    def compose(self) -> ComposeResult:
        yield Static("", id="budget-spent")
        yield ProgressBar(total=1, show_eta=False, id="budget-bar")
        yield Static("", id="budget-burn")
        yield Static("", id="budget-eta")

    def watch_view(self, view: RunView | None) -> None:
        if view is None:
            return
        budget = view.snapshot.budget
        spent, burn = budget_lines(budget)
        set_text(self.query_one("#budget-spent", Static), spent)
        set_text(self.query_one("#budget-burn", Static), burn)
        set_text(self.query_one("#budget-eta", Static), eta_line(view))
        bar = self.query_one("#budget-bar", ProgressBar)
        allocation, used = budget.get("allocation_usd"), budget.get("spent_usd")
        bar.display = allocation is not None and used is not None
        if bar.display:
            bar.update(total=allocation, progress=min(used, allocation))
