"""The journal's record of the plan and of why a run stopped: amendments, stop causes, settled phases.

A mixin of `Journal` (journal/store.py): the queries live with the journal, in a file of their own.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from phasegate.floor.states import AttemptState, PhaseState, SessionState
from phasegate.journal.events import EventKind

# What an operator does about a stop that counts as addressing its cause (a plain resume may then continue).
ADDRESSING_KINDS = (EventKind.GATE_WAIVED, EventKind.SESSION_AMENDED)


@dataclass(frozen=True)
class StopRecord:
    """The newest stop of a run: its trigger, and whether an operator acted on it since."""

    seq: int
    trigger: str | None
    reason: str | None
    addressed: bool


@dataclass(frozen=True)
class Amendment:
    """One new version of the plan: the frozen file it lives in, its diff and why."""

    version: int
    path: str
    sha256: str
    reason: str
    diff: str
    changes: list[str]
    ts: float


class PlanJournal:
    """The journal's plan versions and stop causes; `Journal` provides `_conn`, `clock`, `transaction`, `_event`,
    `phase_state` and `_move_phase`."""

    _conn: sqlite3.Connection

    # -- why the run stopped -----------------------------------------------------------------
    def last_stop(self) -> StopRecord | None:
        """The newest move of the session to stopped, with its trigger; None when it never stopped."""
        row = self._conn.execute("SELECT seq, data FROM events WHERE type=? AND json_extract(data, '$.state')=?"
                                 " ORDER BY seq DESC LIMIT 1",
                                 (str(EventKind.SESSION_STATE), str(SessionState.STOPPED))).fetchone()
        if row is None:
            return None
        data = json.loads(row["data"])
        marks = ", ".join("?" * len(ADDRESSING_KINDS))
        acted = self._conn.execute(f"SELECT 1 FROM events WHERE seq > ? AND type IN ({marks}) LIMIT 1",
                                   (row["seq"], *map(str, ADDRESSING_KINDS))).fetchone()
        return StopRecord(row["seq"], data.get("trigger"), data.get("reason"), acted is not None)

    def _settle_phases(self) -> None:
        """No phase stays `running` in a run that stops: an attempt that never ended is discarded (the phase is
        pending again), one whose child exited but whose gates did not pass leaves the phase failed (its attempt
        stays exited, so a waiver or an amended gate can still let it pass without running it again)."""
        rows = self._conn.execute("SELECT id FROM phases WHERE state=?", (PhaseState.RUNNING,)).fetchall()
        for (phase,) in rows:
            exited = self._conn.execute("SELECT 1 FROM attempts WHERE phase=? AND state=?",
                                        (phase, AttemptState.EXITED)).fetchone()
            target = PhaseState.FAILED if exited else PhaseState.PENDING
            self._conn.execute("UPDATE attempts SET state=?, ended_at=?, reason=? WHERE phase=? AND state IN (?, ?)",
                               (AttemptState.DISCARDED, self.clock(), "the run stopped before it ended",
                                phase, AttemptState.INTENT, AttemptState.RUNNING))
            self._conn.execute("UPDATE phases SET state=?, ended_at=COALESCE(ended_at, ?) WHERE id=?",
                               (target, self.clock(), phase))

    def reopen_exited(self, phase: str) -> None:
        """A failed phase whose last attempt exited goes back to running: its gates are decided again."""
        with self.transaction():
            self._conn.execute("UPDATE phases SET state=?, ended_at=NULL WHERE id=? AND state=?",
                               (PhaseState.RUNNING, phase, PhaseState.FAILED))

    def retire_exited(self, phase: str, reason: str) -> None:
        """The exited attempt of a phase will not be decided again (it runs anew): it counts as failed."""
        with self.transaction():
            self._conn.execute("UPDATE attempts SET state=?, ended_at=COALESCE(ended_at, ?), reason=?"
                               " WHERE phase=? AND state=?",
                               (AttemptState.FAILED, self.clock(), reason, phase, AttemptState.EXITED))
            if self.phase_state(phase) == PhaseState.RUNNING:
                self._move_phase(phase, PhaseState.FAILED)

    def exited_attempt_hash(self, phase: str) -> str | None:
        """The input key of the phase's exited attempt, if it has one."""
        row = self._conn.execute("SELECT input_hash FROM attempts WHERE phase=? AND state=? ORDER BY attempt DESC"
                                 " LIMIT 1", (phase, AttemptState.EXITED)).fetchone()
        return None if row is None else row[0]

    # -- the plan's versions -----------------------------------------------------------------
    def amendments(self) -> list[Amendment]:
        """Every amendment of the plan, oldest first."""
        rows = self._conn.execute("SELECT ts, data FROM events WHERE type=? ORDER BY seq",
                                  (str(EventKind.SESSION_AMENDED),)).fetchall()
        return [Amendment(ts=r["ts"], **{k: v for k, v in json.loads(r["data"]).items()
                                         if k in Amendment.__dataclass_fields__}) for r in rows]

    def plan_version(self) -> int:
        """1 for the plan the run started with, then one more per amendment."""
        amendments = self.amendments()
        return amendments[-1].version if amendments else 1

    def record_amendment(self, *, version: int, path: str, sha256: str, reason: str, diff: str,
                         changes: list[str], phases: list[tuple[str, str]]) -> None:
        """Adopt a new plan version: its hash becomes the run's, the phases table follows its phases, and the
        amendment is journaled as an operator action with its diff (all in one transaction)."""
        with self.transaction():
            self._conn.execute("UPDATE run SET spec_sha256=?, updated_at=?", (sha256, self.clock()))
            self._replace_pending_phases(phases)
            note = f"plan v{version}: {reason}" + (f" ({'; '.join(changes)})" if changes else "")
            self._conn.execute("INSERT INTO operator_actions (gate_id, action, note, ts, phase) VALUES (?, ?, ?, ?, ?)",
                               ("session", "amended", note, self.clock(), None))
            self._event(EventKind.SESSION_AMENDED, None, {"version": version, "path": path, "sha256": sha256,
                                                          "reason": reason, "diff": diff, "changes": changes})

    def _replace_pending_phases(self, phases: list[tuple[str, str]]) -> None:
        """The phases table in the new plan's order: new phases added, dropped ones (never started) removed."""
        known = {r["id"]: r for r in self._conn.execute("SELECT id, attempts FROM phases")}
        wanted = {phase for phase, _ in phases}
        for phase, row in known.items():
            if phase not in wanted:
                if row["attempts"]:
                    raise ValueError(f"phase {phase!r} has run: it cannot leave the plan")
                self._conn.execute("DELETE FROM phases WHERE id=?", (phase,))
        for position, (phase, kind) in enumerate(phases):
            if phase in known:
                self._conn.execute("UPDATE phases SET position=?, kind=? WHERE id=?", (position, kind, phase))
            else:
                self._conn.execute("INSERT INTO phases (id, position, kind, state) VALUES (?, ?, ?, ?)",
                                   (phase, position, kind, PhaseState.PENDING))
