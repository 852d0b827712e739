"""The run's artifacts, listed by phase; enter shows the chosen file's head (look at the data before approving)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from phasegate.journal.snapshot import ArtifactView
from phasegate.tui.messages import CommandDone, TextLoaded
from phasegate.tui.reader import RunReader
from phasegate.tui.widgets.footer import KeyFooter

COLUMNS = ("phase", "file", "size")


def size_text(size: int) -> str:
    """Bytes in the largest unit that keeps a number below 1024."""
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):  # noqa: B007 - the unit reached is the one shown
        if value < 1024:
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


def shown_path(artifact: ArtifactView) -> str:
    """The artifact's path inside its phase's folder (the journal keeps it from the run folder)."""
    path = Path(artifact.path)
    prefix = Path("artifacts") / artifact.phase
    return str(path.relative_to(prefix)) if path.is_relative_to(prefix) else str(path)


class FilesScreen(Screen[None]):
    """A table of every journaled artifact; the current phase's first. Enter opens a file's head."""

    BINDINGS = [Binding("escape", "close", "Back"), Binding("q", "close", "Back"),
                Binding("enter", "open", "Show head")]

    def __init__(self, reader: RunReader, artifacts: tuple[ArtifactView, ...], phase: str | None) -> None:
        super().__init__()
        self.reader = reader
        self.artifacts = tuple(sorted(artifacts, key=lambda a: a.phase != phase))

    def compose(self) -> ComposeResult:
        yield Static("Artifacts · enter shows the first lines of a file", id="text-title")
        yield DataTable(cursor_type="row", zebra_stripes=False, id="files-table")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        rows = [(a.phase, shown_path(a), size_text(a.size)) for a in self.artifacts]
        for index, label in enumerate(COLUMNS):
            table.add_column(label, width=max([len(label), *(len(row[index]) for row in rows)]))
        for number, row in enumerate(rows):
            table.add_row(*map(Text, row), key=str(number))
        table.focus()

    @on(DataTable.RowSelected)
    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if self.artifacts:
            self._load(self.artifacts[table.cursor_row])

    @work(thread=True, group="files", exit_on_error=False)
    def _load(self, artifact: ArtifactView) -> None:
        path = self.reader.artifact_path(artifact)
        if path is None or not path.is_file():
            self.post_message(CommandDone(f"{artifact.path}: not a file inside the phase's artifact folder"))
            return
        self.post_message(TextLoaded(f"{artifact.phase}/{shown_path(artifact)} (head)", self.reader.head_text(path)))

    def action_close(self) -> None:
        self.dismiss(None)
