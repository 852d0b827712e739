"""The gates panel: every decided gate with its status, and a detail line for the selected one."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from phasegate.tui.format import gate_detail, gate_status
from phasegate.tui.view import RunView
from phasegate.tui.widgets import set_text

COLUMNS = ("status", "gate", "phase", "summary")
MAX_COLUMN = 120  # a long summary scrolls sideways; its whole text is in the detail line and the journal


class GatesPanel(Vertical):
    """A DataTable of gates (status in words) and one line of detail: rules, reviewer decision, waiver."""

    view: reactive[RunView | None] = reactive(None)
    """The latest view of the run (bound to the app's)."""

    selected: reactive[str | None] = reactive(None)
    """The gate id under the table's cursor."""

    def __init__(self) -> None:
        super().__init__()
        self._rows: tuple = ()

    def compose(self) -> ComposeResult:
        table = DataTable(cursor_type="row", zebra_stripes=False, id="gates-table")
        table.add_columns(*COLUMNS)
        yield table
        yield Static("No gate has been evaluated yet.", id="gate-detail")

    def watch_view(self, view: RunView | None) -> None:
        if view is None:
            return
        approved = view.snapshot.approved_gate_ids
        rows = tuple((gate_status(g, approved), g.gate_id, g.phase, g.summary) for g in view.snapshot.gates)
        if rows != self._rows:  # rebuilding the table resets its cursor, so only on a real change
            self._rows = rows
            self._fill(rows)
        self._show_detail()

    def _fill(self, rows: tuple) -> None:
        table = self.query_one(DataTable)
        keep = self.selected
        table.clear(columns=True)
        # Widths set here, not measured by the table when idle: the table is right on its first frame.
        for index, label in enumerate(COLUMNS):
            table.add_column(label, width=min(MAX_COLUMN, max([len(label), *(len(row[index]) for row in rows)])))
        for row in rows:
            table.add_row(*map(Text, row), key=row[1])
        ids = [row[1] for row in rows]
        if keep in ids:
            table.move_cursor(row=ids.index(keep), animate=False)
        elif ids:
            # With nothing chosen yet, point at the gate that most needs the operator.
            wanted = next((i for i, row in enumerate(rows) if row[0].startswith(("PENDING", "FAIL"))), 0)
            table.move_cursor(row=wanted, animate=False)
        self.selected = ids[table.cursor_row] if ids else None

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.selected = event.row_key.value if event.row_key is not None else None
        self._show_detail()

    def _show_detail(self) -> None:
        gate = self.selected_gate()
        text = gate_detail(gate) if gate is not None else "No gate has been evaluated yet."
        set_text(self.query_one("#gate-detail", Static), text)

    def selected_gate(self):
        """The GateView under the cursor, or None."""
        if self.view is None:
            return None
        return next((g for g in self.view.snapshot.gates if g.gate_id == self.selected), None)
