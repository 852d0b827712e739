"""A full-screen chart of one metric over its reported values, beside the table of every metric."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Sparkline, Static

from phasegate.tui.format import number
from phasegate.tui.view import MetricSeries, RunView
from phasegate.tui.widgets import set_text
from phasegate.tui.widgets.footer import KeyFooter
from phasegate.tui.widgets.metrics import MetricsTable, ordered


def chart_caption(series: MetricSeries | None) -> tuple[str, str, str]:
    """The chart's title, its top (max) label and its axis line."""
    if series is None:
        return "No metric selected.", "", ""
    values = series.values
    title = f"{series.label} · {len(values)} values · last {number(values[-1])}"
    return title, f"max {number(max(values))}", f"min {number(min(values))} · value 1 → {len(values)}"


class MetricsScreen(Screen[None]):
    """The table of metrics and a chart (Textual's Sparkline, bar height = value) of the one under the cursor."""

    BINDINGS = [Binding("escape", "close", "Back"), Binding("q", "close", "Back")]

    def __init__(self, selected: str | None = None) -> None:
        super().__init__()
        self._wanted = selected

    def compose(self) -> ComposeResult:
        yield Static("Metrics · ↑/↓ chooses the metric to chart", id="text-title")
        yield MetricsTable(id="metrics-all")
        yield Static("", id="chart-title")
        yield Static("", id="chart-max")
        yield Sparkline([], id="chart")
        yield Static("", id="chart-axis")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(MetricsTable)
        table.selected = self._wanted
        table.focus()
        self.watch(self.app, "view", self._show)

    def _show(self, view: RunView | None) -> None:
        if view is not None:
            self.query_one(MetricsTable).show(ordered(view))
            self._chart()

    @on(MetricsTable.RowHighlighted)
    def _chart(self) -> None:
        view: RunView | None = self.app.view
        label = self.query_one(MetricsTable).selected
        series = next((s for s in view.metrics if s.label == label), None) if view else None
        title, top, axis = chart_caption(series)
        set_text(self.query_one("#chart-title", Static), title)
        set_text(self.query_one("#chart-max", Static), top)
        set_text(self.query_one("#chart-axis", Static), axis)
        self.query_one(Sparkline).data = list(series.values) if series else []

    def action_close(self) -> None:
        self.dismiss(None)
