"""The TUI's window on a run: a snapshot, the new journal events and the phase output since the last read.

Plain Python, no textual: one sampler worker thread owns a RunReader and calls `poll()`; tests inject
their own reader through `create_app(reader=...)`.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from phasegate.floor.states import FINISHED_SESSION_STATES
from phasegate.journal.snapshot import GateView, PhaseView, RunSnapshot, take_snapshot
from phasegate.session.runs import OpenRun, open_run
from phasegate.tui.feed import feed_text

FEED_SIZE = 200
# Elapsed time and budget move while nothing is written, so the view is re-read this often anyway.
FULL_READ_EVERY_S = 1.0
# The UI shows at most 4 views a second; reading more often under a stream of events only burns CPU.
MIN_READ_GAP_S = 0.25
LOG_BACKLOG_BYTES = 4096
LOG_READ_MAX_BYTES = 64 * 1024
TEXT_READ_MAX_BYTES = 1 << 20
REVIEW_FILES = ("prompt.md", "output.txt", "meta.json")


@dataclass(frozen=True)
class FeedLine:
    """One entry of the live log: `n` orders entries across reads, `ts` is when it was seen."""

    n: int
    ts: float
    text: str


@dataclass(frozen=True)
class RunView:
    """What the UI shows at one moment: the run snapshot, the latest feed entries and the clock."""

    snapshot: RunSnapshot
    feed: tuple[FeedLine, ...]
    now: float

    @property
    def current_phase(self) -> PhaseView | None:
        """The running phase, else the next one to run, else the last one."""
        phases = self.snapshot.phases
        running = next((p for p in phases if p.state == "running"), None)
        upcoming = next((p for p in phases if p.state != "passed"), None)
        return running or upcoming or (phases[-1] if phases else None)

    @property
    def pending_gates(self) -> tuple[GateView, ...]:
        """Gates waiting for an operator."""
        return tuple(g for g in self.snapshot.gates if g.status == "pending")

    @property
    def finished(self) -> bool:
        """True when the session reached an end state (completed, stopped, failed)."""
        return self.snapshot.state in FINISHED_SESSION_STATES

    @property
    def elapsed_s(self) -> float:
        """Wall time of the run so far (up to its end for a finished run)."""
        end = self.snapshot.updated_at if self.finished else self.now
        return max(0.0, end - self.snapshot.created_at)


class RunReader:
    """Reads one run for the UI; used from a single worker thread (it owns a journal connection)."""

    def __init__(self, run: OpenRun, *, clock=time.time, min_gap_s: float = MIN_READ_GAP_S) -> None:
        self.run = run
        self.clock = clock
        self.min_gap_s = min_gap_s
        self._version: int | None = None
        self._last_read = -math.inf
        self._seq: int | None = None
        self._n = 0
        self._feed: deque[FeedLine] = deque(maxlen=FEED_SIZE)
        self._log: Path | None = None
        self._log_offset = 0
        self._log_partial = b""
        self._drop_first = False

    @classmethod
    def open(cls, run_dir: Path, *, clock=time.time, min_gap_s: float = MIN_READ_GAP_S) -> RunReader:
        """Open a run folder for reading (raises the core's errors for a missing or damaged run)."""
        return cls(open_run(Path(run_dir)), clock=clock, min_gap_s=min_gap_s)

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir.root

    def close(self) -> None:
        self.run.journal.close()

    # -- polling -----------------------------------------------------------------------------
    def poll(self, *, force: bool = False) -> RunView | None:
        """A new view when the journal or the phase log changed (or a second passed); else None."""
        since = time.monotonic() - self._last_read
        if not force and since < self.min_gap_s:
            return None  # a change now is still seen: data_version stays different until the next read
        version = self.run.journal.data_version()
        if not (force or since >= FULL_READ_EVERY_S or version != self._version or self._log_grew()):
            return None
        self._version, self._last_read = version, time.monotonic()
        return self.read()

    def read(self) -> RunView:
        """Read the whole view now."""
        now = self.clock()
        snapshot = take_snapshot(self.run.run_dir, self.run.journal, spec_budget=self.run.spec_budget, now=now)
        self._read_events()
        view = RunView(snapshot, (), now)
        self._read_log(view.current_phase)
        return replace(view, feed=tuple(self._feed))

    def _push(self, ts: float, text: str) -> None:
        self._n += 1
        self._feed.append(FeedLine(self._n, ts, text))

    def _read_events(self) -> None:
        if self._seq is None:  # first read: only the tail of a long history
            self._seq = max(0, self.run.journal.last_event_seq() - FEED_SIZE)
        for record in self.run.journal.events_since(self._seq):
            self._seq = record.seq
            text = feed_text(record.type, record.phase, record.data)
            if text is not None:
                self._push(record.ts, text)

    # -- the current phase's output ----------------------------------------------------------
    def _log_size(self) -> int:
        try:
            return self._log.stat().st_size if self._log else 0
        except OSError:
            return 0

    def _log_grew(self) -> bool:
        return self._log is not None and self._log_size() != self._log_offset

    def _read_log(self, phase: PhaseView | None) -> None:
        """Append the new lines of the current phase's stdout/stderr log to the feed."""
        if phase is None:
            return
        path = self.run.run_dir.log(phase.id)
        if path != self._log:  # another phase: start with the end of what it already wrote
            self._log, self._log_partial = path, b""
            self._log_offset = max(0, self._log_size() - LOG_BACKLOG_BYTES)
            self._drop_first = self._log_offset > 0
        size = self._log_size()
        if size < self._log_offset:  # truncated or replaced
            self._log_offset, self._log_partial = 0, b""
        if size - self._log_offset > LOG_READ_MAX_BYTES:  # a flood: show its end, never all of it
            self._log_offset, self._log_partial, self._drop_first = size - LOG_READ_MAX_BYTES, b"", True
        if size == self._log_offset:
            return
        with open(path, "rb") as handle:
            handle.seek(self._log_offset)
            data = handle.read(size - self._log_offset)
        self._log_offset += len(data)
        self._push_lines(phase.id, self._log_partial + data)

    def _push_lines(self, phase_id: str, buffer: bytes) -> None:
        if self._drop_first:  # the read started mid-line
            cut = buffer.find(b"\n")
            if cut < 0:
                self._log_partial = b""
                return
            buffer, self._drop_first = buffer[cut + 1:], False
        *complete, self._log_partial = buffer.split(b"\n")
        now = self.clock()
        for line in complete:
            self._push(now, f"{phase_id} │ {line.decode('utf-8', errors='replace').rstrip()}")

    # -- files the operator opens ------------------------------------------------------------
    def read_text(self, path: Path) -> str:
        """A text file's content (its last megabyte when larger)."""
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - TEXT_READ_MAX_BYTES))
            data = handle.read()
        prefix = f"[first {size - len(data)} bytes not shown]\n" if size > len(data) else ""
        return prefix + data.decode("utf-8", errors="replace")

    def document(self, paths: list[Path]) -> str:
        """Files one after another, each under a header naming it relative to the run folder."""
        sections = []
        for path in paths:
            shown = path.relative_to(self.run_dir) if path.is_relative_to(self.run_dir) else path
            sections.append(f"── {shown} ──\n{self.read_text(path)}")
        return "\n".join(sections)

    def review_files(self, gate_id: str, review_dir: object = None) -> list[Path]:
        """The files of the review a gate names in its evidence, else of its latest `reviews/<gate>-<n>/`."""
        folder = Path(review_dir) if isinstance(review_dir, str) and review_dir else None
        if folder is None or not folder.is_dir():
            pattern = re.compile(rf"^{re.escape(gate_id)}-(\d+)$")
            numbered = [(int(m.group(1)), p) for p in self.run.run_dir.reviews.glob(f"{gate_id}-*")
                        if (m := pattern.match(p.name)) and p.is_dir()]
            folder = max(numbered)[1] if numbered else None
        return [folder / name for name in REVIEW_FILES if (folder / name).is_file()] if folder else []
