"""The run's journal: SQLite in WAL mode, one transaction per state change, the single source of truth."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from phasegate.floor.redact import Redactor
from phasegate.floor.states import (
    OPEN_ATTEMPT_STATES,
    AttemptState,
    PhaseState,
    SessionState,
    check_phase_transition,
    check_session_transition,
)
from phasegate.journal import budget
from phasegate.journal.events import EventKind
from phasegate.journal.intake import MAX_WARNINGS_PER_ATTEMPT as MAX_WARNINGS_PER_ATTEMPT
from phasegate.journal.intake import Intake
from phasegate.journal.opening import connect, creating, open_connection
from phasegate.journal.plan import PlanJournal
from phasegate.journal.records import (
    AttemptRecord,
    CommandRecord,
    EventRecord,
    GateRecord,
    OperatorAction,
    PhaseRecord,
    RunRecord,
)
from phasegate.journal.review_log import ReviewJournal
from phasegate.journal.sanitize import MAX_TEXT_CHARS, clean, masked_text
from phasegate.journal.schema import SCHEMA, SCHEMA_VERSION

Clock = Callable[[], float]
# A gate's evidence may quote whole files (a reviewer's answer): masked, and cut only when very long.
GATE_EVIDENCE_CHARS = 100_000
# Labels a phase names (a metric, a progress step) are kept this long.
MAX_LABEL_CHARS = 200
# What a write to the run folder or the journal raises when storage fails (a full disk, say).
STORAGE_ERRORS: tuple[type[Exception], ...] = (OSError, sqlite3.OperationalError)


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC from a file write, or SQLite saying its disk is full."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()



class Journal(PlanJournal, ReviewJournal):
    """Read and write access to one run's state.db; only the controller changes run state.

    Every query of phasegate lives here (and in the snapshot and budget readers of this package);
    callers get typed, frozen records, never a row or a cursor.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Clock = time.time,
                 redactor: Redactor | None = None) -> None:
        self._conn = conn
        self.path = path
        self.clock = clock
        # Masks every text that enters the journal; the controller gives it the session's secrets.
        self.redactor = redactor or Redactor()
        # What this controller kept and counted of its phases' input (limits per attempt, held updates).
        self._intake = Intake()

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, *, run_id: str, name: str, spec_sha256: str, session_dir: Path,
               spec_path: Path, phases: list[tuple[str, str]], clock: Clock = time.time) -> Journal:
        """Create a new journal with its run row and one pending row per phase."""
        # Private like the logs: SQLite gives the -wal and -shm files the mode of the database file.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with creating(path):
            conn = connect(path)
        journal = cls(conn, path, clock)
        now = clock()
        with creating(path, conn), journal.transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute(
                "INSERT INTO run VALUES (1, ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
                (run_id, name, SessionState.CREATED, now, now, spec_sha256, str(session_dir), str(spec_path)),
            )
            conn.executemany(
                "INSERT INTO phases (id, position, kind, state) VALUES (?, ?, ?, ?)",
                [(pid, i, kind, PhaseState.PENDING) for i, (pid, kind) in enumerate(phases)],
            )
            journal._event(EventKind.RUN_CREATED, None, {"run_id": run_id, "name": name})
        return journal

    @classmethod
    def open(cls, path: Path, clock: Clock = time.time) -> Journal:
        """Open an existing journal, checking that it is intact, of this schema version and the run's own."""
        return cls(open_connection(path), path, clock)

    def close(self) -> None:
        self._conn.close()

    def data_version(self) -> int:
        """A number that changes whenever another connection commits (cheap change detection for readers)."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def durability(self) -> dict[str, Any]:
        """The connection's journal mode and synchronous level (WAL, FULL = 2)."""
        return {"journal_mode": self._conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": self._conn.execute("PRAGMA synchronous").fetchone()[0]}

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable state change."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _event(self, kind: EventKind, phase: str | None, data: dict[str, Any]) -> int:
        """Insert one event (secrets masked, text cut short, numbers finite); held updates and drop counts
        not yet journaled go first."""
        self._journal_held()
        return self._insert_event(kind, phase, data)

    def _insert_event(self, kind: EventKind, phase: str | None, data: dict[str, Any]) -> int:
        cursor = self._conn.execute(
            "INSERT INTO events (ts, type, phase, data) VALUES (?, ?, ?, ?)",
            (self.clock(), str(kind), phase, json.dumps(clean(data, self.redactor.redact), sort_keys=True)),
        )
        return int(cursor.lastrowid)

    def _journal_held(self) -> None:
        """Write held progress and metric updates of current attempts, then drop counts not yet journaled."""
        progress, metrics = self._intake.take_updates()
        for (phase, attempt), (done, total, step) in progress.items():
            if self._attempt_of(phase) == attempt:  # an update of an attempt since ended is not the phase's now
                step = self._text(step, MAX_LABEL_CHARS)
                self._conn.execute("UPDATE phases SET progress_done=?, progress_total=?, progress_step=?,"
                                   " last_activity=? WHERE id=?", (done, total, step, self.clock(), phase))
                self._insert_event(EventKind.PROGRESS, phase, {"done": done, "total": total, "step": step})
        for (phase, attempt), values in metrics.items():
            if self._attempt_of(phase) == attempt:
                self._journal_metrics(phase, attempt, values)
        for (phase, _), data in self._intake.drop_notes():
            self._insert_event(EventKind.EVENTS_DROPPED, phase, data)

    def _journal_metrics(self, phase: str, attempt: int, values: dict[str, float | None]) -> None:
        now = self.clock()
        for name, value in values.items():
            name = self._text(name, MAX_LABEL_CHARS)
            self._conn.execute("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)", (phase, name, value, now))
            if self._intake.take_metric_event((phase, attempt)):
                self._insert_event(EventKind.METRIC, phase, {"name": name, "value": value})
            else:  # the table keeps the value; its history is counted
                self._intake.drop((phase, attempt), limited=True)

    def _attempt_of(self, phase: str) -> int:
        return self.phase(phase).attempts

    def _count_drop(self, phase: str, attempt: int, *, limited: bool) -> None:
        """Count an event not journaled; the count is journaled at once, then at most once a second."""
        key = (phase, attempt)
        self._intake.drop(key, limited=limited)
        if self._intake.drop_note_due(key):
            with self.transaction():
                self._journal_held()

    def flush_updates(self) -> None:
        """Write held progress and metric updates when they are due (a controller calls this as it waits)."""
        if self._intake.updates_due():
            with self.transaction():
                self._journal_held()

    def _text(self, text: str | None, limit: int = MAX_TEXT_CHARS) -> str | None:
        """Text a phase sent, as a column keeps it: masked, then cut short."""
        return None if text is None else masked_text(text, self.redactor.redact, limit)

    def append_event(self, kind: EventKind, phase: str | None, data: dict[str, Any]) -> None:
        """Record an event that changes no state (a log line from a phase, a heartbeat)."""
        with self.transaction():
            self._event(kind, phase, data)

    def record_warning(self, kind: EventKind, phase: str, data: dict[str, Any]) -> bool:
        """Journal a warning about what a phase sent; past the per-attempt limit it is only counted.

        Returns whether it was journaled. The count is journaled at once, then at most once a
        second, and before any other event, so a flood costs the journal a few rows.
        """
        return self._within_limit(self._intake.take_warning, kind, phase, data, limited=False)

    def record_message(self, kind: EventKind, phase: str, data: dict[str, Any]) -> bool:
        """Journal what a phase said (a log line, a stop request); past the per-attempt limit it is only counted."""
        return self._within_limit(self._intake.take_message, kind, phase, data, limited=True)

    def _within_limit(self, allowed: Callable[[tuple[str, int]], bool], kind: EventKind, phase: str,
                      data: dict[str, Any], *, limited: bool) -> bool:
        """Journal the event when `allowed` lets one more of this attempt in, else count it as dropped."""
        attempt = self._attempt_of(phase)
        if allowed((phase, attempt)):
            self.append_event(kind, phase, data)
            return True
        self._count_drop(phase, attempt, limited=limited)
        return False

    # -- session -----------------------------------------------------------------------------
    def session_state(self) -> SessionState:
        return SessionState(self._conn.execute("SELECT state FROM run").fetchone()[0])

    def run(self) -> RunRecord | None:
        """The run row; None only in a journal cut short while the run was created."""
        row = self._conn.execute("SELECT * FROM run").fetchone()
        return None if row is None else RunRecord.from_row(row)

    def set_session_state(self, target: SessionState, reason: str | None = None, trigger: str | None = None) -> None:
        """Move the session to `target`, refusing transitions the state machine forbids; a stop keeps its
        trigger (what a later resume may do depends on it) and leaves no phase running."""
        with self.transaction():
            check_session_transition(self.session_state(), target)
            reason = self._text(reason)
            if target in (SessionState.STOPPED, SessionState.FAILED):
                self._settle_phases()
            self._conn.execute("UPDATE run SET state=?, reason=?, updated_at=?", (target, reason, self.clock()))
            scope = {"trigger": trigger} if trigger else {}
            self._event(EventKind.SESSION_STATE, None, {"state": str(target), "reason": reason, **scope})

    # -- phases ------------------------------------------------------------------------------
    def phase(self, phase: str) -> PhaseRecord:
        return PhaseRecord.from_row(self._conn.execute("SELECT * FROM phases WHERE id=?", (phase,)).fetchone())

    def phases(self) -> list[PhaseRecord]:
        """Every phase, in session order."""
        return [PhaseRecord.from_row(r) for r in self._conn.execute("SELECT * FROM phases ORDER BY position")]

    def phase_state(self, phase: str) -> PhaseState:
        return self.phase(phase).state

    def running_phase(self) -> str | None:
        """The phase running now, if any."""
        row = self._conn.execute("SELECT id FROM phases WHERE state=? LIMIT 1", (PhaseState.RUNNING,)).fetchone()
        return None if row is None else row[0]

    def _move_phase(self, phase: str, target: PhaseState) -> None:
        check_phase_transition(phase, self.phase_state(phase), target)
        self._conn.execute("UPDATE phases SET state=? WHERE id=?", (target, phase))

    def begin_attempt(self, phase: str, input_hash: str) -> int:
        """Commit the intent to run a phase (before its child is spawned); returns the attempt number."""
        now = self.clock()
        with self.transaction():
            self._move_phase(phase, PhaseState.RUNNING)
            attempt = self.phase(phase).attempts + 1
            self._conn.execute(
                "UPDATE phases SET attempts=?, started_at=?, ended_at=NULL, error=NULL, progress_done=NULL,"
                " progress_total=NULL, progress_step=NULL, last_activity=? WHERE id=?",
                (attempt, now, now, phase),
            )
            self._conn.execute(
                "INSERT INTO attempts (phase, attempt, state, input_hash, started_at) VALUES (?, ?, ?, ?, ?)",
                (phase, attempt, AttemptState.INTENT, input_hash, now),
            )
            self._conn.execute("DELETE FROM metrics WHERE phase=?", (phase,))
            self._conn.execute("DELETE FROM artifacts WHERE phase=?", (phase,))
            self._event(EventKind.PHASE_STARTED, phase, {"attempt": attempt})
        return attempt

    def attempt_spawned(self, phase: str, attempt: int, pid: int, pid_start: str) -> None:
        """Record which process runs an attempt, so a later resume can find and end an orphan."""
        with self.transaction():
            self._conn.execute(
                "UPDATE attempts SET state=?, pid=?, pid_start=? WHERE phase=? AND attempt=?",
                (AttemptState.RUNNING, pid, pid_start, phase, attempt),
            )

    def mark_exited(self, phase: str, attempt: int, exit_code: int, artifacts: list[tuple[str, str, int]]) -> None:
        """Commit that an attempt's child succeeded and its artifacts (already durable on disk) exist."""
        now = self.clock()
        with self.transaction():
            self._conn.execute(
                "UPDATE attempts SET state=?, exit_code=? WHERE phase=? AND attempt=?",
                (AttemptState.EXITED, exit_code, phase, attempt)
            )
            self._conn.executemany(
                "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?)",
                [(phase, path, digest, size, now) for path, digest, size in artifacts],
            )
            self._event(EventKind.PHASE_EXITED, phase, {"attempt": attempt, "exit_code": exit_code, "artifacts": len(artifacts)})

    def finish_attempt(self, phase: str, attempt: int, *, passed: bool, exit_code: int | None = None,
                       reason: str | None = None) -> None:
        """Commit an attempt's end and the phase's new state (passed or failed)."""
        now = self.clock()
        target = PhaseState.PASSED if passed else PhaseState.FAILED
        attempt_state = AttemptState.PASSED if passed else AttemptState.FAILED
        reason = self._text(reason)
        with self.transaction():
            self._move_phase(phase, target)
            self._conn.execute(
                "UPDATE attempts SET state=?, ended_at=?, exit_code=COALESCE(?, exit_code), reason=?"
                " WHERE phase=? AND attempt=?",
                (attempt_state, now, exit_code, reason, phase, attempt),
            )
            self._conn.execute(
                "UPDATE phases SET ended_at=?, error=?, failures=failures+? WHERE id=?",
                (now, reason, 0 if passed else 1, phase),
            )
            self._event(EventKind.PHASE_FINISHED, phase, {"attempt": attempt, "state": str(target),
                                                          "exit_code": exit_code, "reason": reason})

    def exited_attempt(self, phase: str) -> int | None:
        """An attempt whose child finished but whose gates have not let the phase pass yet."""
        row = self._conn.execute(
            "SELECT attempt FROM attempts WHERE phase=? AND state=? ORDER BY attempt DESC LIMIT 1",
            (phase, AttemptState.EXITED)
        ).fetchone()
        return None if row is None else int(row[0])

    def events_since(self, seq: int) -> list[EventRecord]:
        """Journal events after `seq`, oldest first."""
        rows = self._conn.execute("SELECT * FROM events WHERE seq > ? ORDER BY seq", (seq,))
        return [EventRecord.from_row(r) for r in rows]

    def last_event_seq(self) -> int:
        """The sequence number of the newest event (0 in an empty journal)."""
        return int(self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def recent_events(self, phase: str | None, limit: int) -> list[EventRecord]:
        """The last `limit` events of one phase and of the session (progress left out), oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM events WHERE (phase IS NULL OR phase = ?) AND type != ?"
            " ORDER BY seq DESC LIMIT ?", (phase, str(EventKind.PROGRESS), limit)).fetchall()
        return [EventRecord.from_row(r) for r in reversed(rows)]

    def discard_attempt(self, phase: str, attempt: int, reason: str) -> None:
        """Mark an interrupted attempt as discarded and put the phase back to pending."""
        with self.transaction():
            self._move_phase(phase, PhaseState.PENDING)
            self._conn.execute(
                "UPDATE attempts SET state=?, ended_at=?, reason=? WHERE phase=? AND attempt=?",
                (AttemptState.DISCARDED, self.clock(), reason, phase, attempt),
            )
            self._event(EventKind.ATTEMPT_DISCARDED, phase, {"attempt": attempt, "reason": reason})

    def open_attempts(self) -> list[AttemptRecord]:
        """Attempts with an intent and no recorded exit: what a crash left behind."""
        marks = ", ".join("?" * len(OPEN_ATTEMPT_STATES))
        rows = self._conn.execute(f"SELECT * FROM attempts WHERE state IN ({marks})", tuple(OPEN_ATTEMPT_STATES))
        return [AttemptRecord.from_row(r) for r in rows]

    def record_progress(self, phase: str, done: int, total: int, step: str | None) -> None:
        """Hold a phase's progress; it is written at most 4 times a second, the latest always (before any event)."""
        self._intake.hold_progress((phase, self._attempt_of(phase)), (done, total, step))
        self.flush_updates()

    def touch(self, phase: str) -> None:
        """Note that a phase showed a sign of life (a heartbeat), at most once a second; held updates go with it."""
        if self._intake.touch_due(phase):
            with self.transaction():
                self._conn.execute("UPDATE phases SET last_activity=? WHERE id=?", (self.clock(), phase))
                self._journal_held()

    def record_metric(self, phase: str, name: str, value: float) -> None:
        """Hold a metric's value like progress; a new name past the attempt's limit is only counted."""
        attempt = self._attempt_of(phase)
        if not self._intake.take_metric_name((phase, attempt), name):
            self._count_drop(phase, attempt, limited=True)
            return
        self._intake.hold_metric((phase, attempt), name, value)  # NaN is held as None: SQLite and JSON have neither
        self.flush_updates()

    # -- gates -------------------------------------------------------------------------------
    def record_gate(self, *, gate_id: str, phase: str, attempt: int, stage: str, kind: str, status: str,
                    summary: str, evidence: dict, metrics: dict) -> None:
        """Journal one gate decision with its evidence."""
        with self.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO gates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (gate_id, phase, attempt, stage, kind, status, self._text(summary),
                 json.dumps(clean(evidence, self.redactor.redact, GATE_EVIDENCE_CHARS), sort_keys=True),
                 json.dumps(clean(metrics, self.redactor.redact), sort_keys=True), self.clock()),
            )
            self._event(EventKind.GATE_DECIDED, phase, {"gate_id": gate_id, "status": status, "summary": summary})

    def gate_decision(self, gate_id: str, attempt: int, *, phase: str) -> GateRecord | None:
        """What the gate `gate_id` of `phase` decided for one attempt, if it was decided (never another phase's)."""
        row = self._conn.execute("SELECT * FROM gates WHERE phase=? AND gate_id=? AND attempt=?",
                                 (phase, gate_id, attempt)).fetchone()
        return None if row is None else GateRecord.from_row(row)

    def earlier_gate_decisions(self, phase: str, before_attempt: int) -> list[GateRecord]:
        """The gate decisions of a phase's attempts before `before_attempt`, oldest first."""
        rows = self._conn.execute("SELECT * FROM gates WHERE phase=? AND attempt<? ORDER BY attempt",
                                  (phase, before_attempt))
        return [GateRecord.from_row(r) for r in rows]

    def record_operator_action(self, gate_id: str, action: str, note: str, phase: str | None = None) -> None:
        """Journal an approval or a waiver of the gate of `phase`, forever.

        Without `phase` it is for the gate of that id, whichever phase (the session file keeps gate ids unique).
        """
        with self.transaction():
            self._conn.execute(
                "INSERT INTO operator_actions (gate_id, action, note, ts, phase) VALUES (?, ?, ?, ?, ?)",
                (gate_id, action, note, self.clock(), phase),
            )
            scope = {} if phase is None else {"phase": phase}
            self._event(EventKind(f"gate_{action}"), None, {"gate_id": gate_id, "note": note, **scope})

    def operator_action(self, gate_id: str, phase: str | None = None) -> OperatorAction | None:
        """The operator's latest word on a gate (approved or waived), if any; with `phase`, only one that
        names that phase's gate or no phase at all, so one phase's approval never stands for another's."""
        row = self._conn.execute(
            "SELECT * FROM operator_actions WHERE gate_id=? AND (? IS NULL OR phase IS NULL OR phase=?)"
            " ORDER BY seq DESC LIMIT 1", (gate_id, phase, phase)
        ).fetchone()
        return None if row is None else OperatorAction.from_row(row)

    def artifact_digests(self, phase: str) -> dict[str, str]:
        """The journaled sha256 of each artifact of a phase's last successful attempt, by path."""
        rows = self._conn.execute("SELECT path, sha256 FROM artifacts WHERE phase=?", (phase,)).fetchall()
        return {r["path"]: r["sha256"] for r in rows}

    # -- telemetry -----------------------------------------------------------------------------
    def record_gpu_samples(self, phase: str | None, samples: list) -> None:
        """Journal one reading of every GPU (a GpuSample list)."""
        now = self.clock()
        with self.transaction():
            self._conn.executemany(
                "INSERT INTO gpu_samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(now, phase, s.gpu, int(s.available), s.reason, s.name, s.mem_used_mb, s.mem_total_mb, s.util_pct,
                  s.temp_c, s.power_w, s.proc_mem_mb) for s in samples],
            )

    # -- money and parameters ----------------------------------------------------------------
    def record_cost(self, kind: str, phase: str | None, amount_usd: float, note: str, seconds: float | None = None) -> None:
        """Add a line to the budget ledger."""
        with self.transaction():
            self._conn.execute("INSERT INTO ledger (ts, kind, phase, seconds, amount_usd, note) VALUES (?, ?, ?, ?, ?, ?)",
                              (self.clock(), kind, phase, seconds, amount_usd, note))

    def spent_usd(self) -> float:
        """Everything the ledger holds, in US dollars."""
        return budget.spent_usd(self._conn)

    def set_param_overrides(self, phase: str, changes: dict[str, Any], gate_id: str) -> None:
        """Keep a reviewer's accepted parameter changes for the next attempts of a phase."""
        with self.transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO param_overrides VALUES (?, ?, ?, ?, ?)",
                [(phase, key, json.dumps(value), gate_id, self.clock()) for key, value in changes.items()],
            )
            self._event(EventKind.PARAMS_CHANGED, phase, {"gate_id": gate_id, "changes": changes})

    def param_overrides(self, phase: str) -> dict[str, Any]:
        rows = self._conn.execute("SELECT key, value FROM param_overrides WHERE phase=?", (phase,)).fetchall()
        return {r["key"]: json.loads(r["value"]) for r in rows}

    # -- commands from outside ---------------------------------------------------------------
    def post_command(self, kind: str, args: dict[str, Any]) -> int:
        """Queue a command for the controller (any process may call this)."""
        with self.transaction():
            cursor = self._conn.execute(
                "INSERT INTO commands (ts, kind, args) VALUES (?, ?, ?)", (self.clock(), kind, json.dumps(args))
            )
        return int(cursor.lastrowid)

    def pending_commands(self) -> list[CommandRecord]:
        rows = self._conn.execute("SELECT * FROM commands WHERE handled_at IS NULL ORDER BY id")
        return [CommandRecord.from_row(r) for r in rows]

    def command(self, command_id: int) -> CommandRecord:
        return CommandRecord.from_row(self._conn.execute("SELECT * FROM commands WHERE id=?", (command_id,)).fetchone())

    def last_command_id(self) -> int:
        """The id of the newest command (0 when none was ever posted)."""
        return int(self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM commands").fetchone()[0])

    def handled_stops_after(self, command_id: int) -> list[CommandRecord]:
        """Stop commands posted after `command_id` that were already handled (by a stop with no live controller)."""
        rows = self._conn.execute("SELECT * FROM commands WHERE kind='stop' AND id>? AND handled_at IS NOT NULL"
                                  " ORDER BY id", (command_id,))
        return [CommandRecord.from_row(r) for r in rows]

    def mark_command_handled(self, command_id: int, result: str) -> None:
        with self.transaction():
            self._conn.execute("UPDATE commands SET handled_at=?, result=? WHERE id=?", (self.clock(), result, command_id))
