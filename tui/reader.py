"""The TUI's window on a run: a snapshot, the new journal events and the phase output since the last read.

Plain Python, no textual: one sampler worker thread owns a RunReader and calls `poll()`; tests inject
their own reader through `create_app(reader=...)`.
"""

from __future__ import annotations

import bisect
import math
import re
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

from phasegate.journal.events import EventKind
from phasegate.journal.records import EventRecord
from phasegate.journal.snapshot import (
    ArtifactView,
    PhaseView,
    events_of,
    take_snapshot,
)
from phasegate.session.artifacts import refusal
from phasegate.session.runner import log_times_path
from phasegate.session.runs import OpenRun, open_run
from phasegate.tui.feed import feed_text
from phasegate.tui.view import FeedLine, Interval, LogTail, MetricSeries, RunView

FEED_SIZE = 200
# Elapsed time and budget move while nothing is written, so the view is re-read this often anyway.
FULL_READ_EVERY_S = 1.0
# The UI shows at most 4 views a second; reading more often under a stream of events only burns CPU.
MIN_READ_GAP_S = 0.25
LOG_BACKLOG_BYTES = 4096
LOG_READ_MAX_BYTES = 64 * 1024
TEXT_READ_MAX_BYTES = 1 << 20
REVIEW_FILES = ("prompt.md", "output.txt", "meta.json")
# Read once from the whole journal when a reader opens: pauses and metric curves need their whole history.
HISTORY_KINDS = (EventKind.SESSION_STATE, EventKind.METRIC)
METRIC_POINTS = 500  # per metric: the chart's width on a wide terminal, and then some
LOG_VIEW_MAX_BYTES = 256 * 1024  # the log view shows the end of a phase's log
HEAD_MAX_BYTES = 64 * 1024  # an artifact's head in the file viewer
HEAD_MAX_LINES = 200

class LogTimes:
    """The side index of a phase log (session/runner.py): when the write holding each byte offset happened."""

    def __init__(self, log: Path, *, tail_bytes: int = LOG_READ_MAX_BYTES) -> None:
        self.path = log_times_path(log)
        self._offsets: list[int] = []
        self._times: list[float] = []
        self._read_at = max(0, _size(self.path) - tail_bytes)
        self._partial = b""
        self._drop_first = self._read_at > 0

    def refresh(self) -> None:
        """Take the entries written since the last refresh."""
        size = _size(self.path)
        if size <= self._read_at:
            return
        with open(self.path, "rb") as handle:
            handle.seek(self._read_at)
            data = self._partial + handle.read(size - self._read_at)
        self._read_at = size
        *lines, self._partial = data.split(b"\n")
        if self._drop_first and lines:
            lines, self._drop_first = lines[1:], False
        for line in lines:
            offset, _, ts = line.partition(b" ")
            try:
                self._offsets.append(int(offset))
                self._times.append(float(ts))
            except ValueError:
                continue  # a damaged entry: those lines show no time rather than a wrong one

    def at(self, offset: int) -> float | None:
        """When the line starting at `offset` was written, or None when the index does not reach back that far."""
        i = bisect.bisect_right(self._offsets, offset) - 1
        return self._times[i] if i >= 0 else None

    def forget_before(self, offset: int) -> None:
        """Drop entries no later line can need (the follower reads forward only)."""
        keep = max(0, bisect.bisect_right(self._offsets, offset) - 1)
        del self._offsets[:keep], self._times[:keep]


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path else 0
    except OSError:
        return 0


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
        self._times: LogTimes | None = None
        self._pauses: list[Interval] = []
        self._series: dict[tuple[str, str], deque[float]] = {}
        self._last_heard: float | None = None

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
        view = RunView(snapshot, (), now, tuple(self._pauses),
                       tuple(MetricSeries(p, n, tuple(v)) for (p, n), v in self._series.items() if v),
                       self._last_heard)
        self._read_log(view.current_phase)
        return replace(view, feed=tuple(self._feed))

    def _push(self, ts: float, text: str) -> None:
        self._n += 1
        self._feed.append(FeedLine(self._n, ts, text))

    def _read_events(self) -> None:
        if self._seq is None:  # first read: only the tail of a long history in the feed
            self._seq = max(0, self.run.journal.last_event_seq() - FEED_SIZE)
            for record in events_of(self.run.journal, HISTORY_KINDS, through_seq=self._seq):
                self._track(record)
        for record in self.run.journal.events_since(self._seq):
            self._seq = record.seq
            self._track(record)
            text = feed_text(record.type, record.phase, record.data)
            if text is not None:
                self._push(record.ts, text)

    def _track(self, record: EventRecord) -> None:
        """Keep what the view derives from the whole history: pauses, metric curves, the last sign of life."""
        self._last_heard = record.ts
        if record.type == EventKind.SESSION_STATE:
            is_open = bool(self._pauses) and self._pauses[-1][1] is None
            if record.data.get("state") == "paused" and not is_open:
                self._pauses.append((record.ts, None))
            elif record.data.get("state") != "paused" and is_open:
                self._pauses[-1] = (self._pauses[-1][0], record.ts)
        elif record.type == EventKind.PHASE_STARTED:  # a new attempt draws a new curve
            for key in [k for k in self._series if k[0] == record.phase]:
                del self._series[key]
        elif record.type == EventKind.METRIC and isinstance(record.data.get("value"), int | float):
            key = (record.phase or "", str(record.data.get("name")))
            self._series.setdefault(key, deque(maxlen=METRIC_POINTS)).append(float(record.data["value"]))

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
            self._log, self._log_partial, self._times = path, b"", LogTimes(path)
            self._log_offset = max(0, self._log_size() - LOG_BACKLOG_BYTES)
            self._drop_first = self._log_offset > 0
        size = self._log_size()
        if size < self._log_offset:  # truncated or replaced
            self._log_offset, self._log_partial, self._times = 0, b"", LogTimes(path)
        if size - self._log_offset > LOG_READ_MAX_BYTES:  # a flood: show its end, never all of it
            self._log_offset, self._log_partial, self._drop_first = size - LOG_READ_MAX_BYTES, b"", True
        if size == self._log_offset:
            return
        with open(path, "rb") as handle:
            handle.seek(self._log_offset)
            data = handle.read(size - self._log_offset)
        start = self._log_offset - len(self._log_partial)
        self._log_offset += len(data)
        self._times.refresh()  # after the log: the runner indexes a write before it makes it
        self._push_lines(phase.id, self._log_partial + data, start)
        self._times.forget_before(self._log_offset - len(self._log_partial))

    def _push_lines(self, phase_id: str, buffer: bytes, start: int) -> None:
        if self._drop_first:  # the read started mid-line
            cut = buffer.find(b"\n")
            if cut < 0:
                self._log_partial = b""
                return
            buffer, self._drop_first, start = buffer[cut + 1:], False, start + cut + 1
        *complete, self._log_partial = buffer.split(b"\n")
        for line in complete:
            self._push(self._times.at(start), f"{phase_id} │ {line.decode('utf-8', errors='replace').rstrip()}")
            start += len(line) + 1

    def log_tail(self, phase_id: str, *, known_size: int | None = None) -> LogTail | None:
        """The end of a phase's log with each line's write time; None when its size is still `known_size`.

        Safe from any thread: it only reads files.
        """
        path = self.run.run_dir.log(phase_id)
        size = _size(path)
        if size == known_size:
            return None
        begin = max(0, size - LOG_VIEW_MAX_BYTES)
        try:
            with open(path, "rb") as handle:
                handle.seek(begin)
                data = handle.read(size - begin)
        except OSError:
            return LogTail(0, ())
        times = LogTimes(path, tail_bytes=4 * LOG_VIEW_MAX_BYTES)
        times.refresh()
        *complete, _ = data.split(b"\n")
        lines, offset = [], begin
        for index, line in enumerate(complete):
            if index or not begin:  # a read that starts mid-file starts mid-line
                lines.append((times.at(offset), line.decode("utf-8", errors="replace").rstrip()))
            offset += len(line) + 1
        return LogTail(size, tuple(lines))

    def head_text(self, path: Path) -> str:
        """The first lines of a file (its head, e.g. the first rows of a train.jsonl), saying when there is more."""
        with open(path, "rb") as handle:
            data = handle.read(HEAD_MAX_BYTES + 1)
            size = handle.seek(0, 2)
        lines = data[:HEAD_MAX_BYTES].decode("utf-8", errors="replace").splitlines()
        shown = lines[:HEAD_MAX_LINES]
        more = len(data) > HEAD_MAX_BYTES or len(lines) > HEAD_MAX_LINES
        note = f"\n[first {len(shown)} lines of {size} bytes shown]" if more else ""
        return "\n".join(shown) + note

    def artifact_path(self, artifact: ArtifactView) -> Path | None:
        """Where a journaled artifact lies, or None when it is not a plain file inside its phase's folder."""
        recorded = Path(artifact.path)
        full = recorded if recorded.is_absolute() else self.run_dir / recorded
        return None if refusal(full, self.run.run_dir.artifacts(artifact.phase)) is not None else full

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
