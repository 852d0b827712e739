"""The metrics panel: one row per metric with its latest value, min, max and a sparkline of its history."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable

from phasegate.checkpoints.render import sparkline
from phasegate.tui.format import number
from phasegate.tui.view import MetricSeries, RunView

# The trend before min and max: on a narrow terminal the sparkline is what the eye needs first.
COLUMNS = ("metric", "last", "trend", "min", "max")
TREND_POINTS = 10


def trend(values: tuple[float, ...]) -> str:
    """A sparkline of values scaled between their own min and max (a flat series sits in the middle)."""
    low, high = min(values), max(values)
    span = high - low
    return sparkline([50.0 if span == 0 else 100.0 * (v - low) / span for v in values])


def metric_row(series: MetricSeries) -> tuple[str, ...]:
    """The table's row for one metric."""
    values = series.values
    return series.label, number(values[-1]), trend(values[-TREND_POINTS:]), number(min(values)), number(max(values))


def ordered(view: RunView) -> tuple[MetricSeries, ...]:
    """The current phase's metrics first, then the others in the order they were first reported."""
    current = view.current_phase.id if view.current_phase else None
    return tuple(sorted(view.metrics, key=lambda s: s.phase != current))


class MetricsTable(DataTable):
    """A table of metric rows, rebuilt only when a row changed, keeping the cursor on the same metric."""

    selected: reactive[str | None] = reactive(None)
    """The label (phase/name) of the metric under the cursor."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._rows: tuple = ()

    def show(self, series: tuple[MetricSeries, ...]) -> None:
        rows = tuple(map(metric_row, series))
        if rows == self._rows:
            return
        self._rows, keep = rows, self.selected
        self.clear(columns=True)
        for index, label in enumerate(COLUMNS):  # widths set here, so the first frame is right
            self.add_column(label, width=max([len(label), *(len(row[index]) for row in rows)]))
        for row in rows:
            self.add_row(*map(Text, row), key=row[0])
        labels = [row[0] for row in rows]
        if keep in labels:
            self.move_cursor(row=labels.index(keep), animate=False)
        self.selected = labels[self.cursor_row] if labels else None

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.selected = event.row_key.value if event.row_key is not None else None


class MetricsPanel(Vertical):
    """What the phases measure, as a table (the m key charts the selected metric)."""

    view: reactive[RunView | None] = reactive(None)
    """The latest view of the run (bound to the app's)."""

    def compose(self) -> ComposeResult:
        yield MetricsTable(id="metrics-table")

    def watch_view(self, view: RunView | None) -> None:
        if view is None:
            return
        # Hidden until a phase reports a metric: the gates then have the whole width.
        self.display = bool(view.metrics)
        self.query_one(MetricsTable).show(ordered(view))

    @property
    def selected(self) -> str | None:
        return self.query_one(MetricsTable).selected
