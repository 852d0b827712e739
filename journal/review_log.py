"""The journal's record of reviewer calls: asked before the CLI starts, answered with its audit hashes and cost in
one transaction, so a reviewer is never asked twice unseen nor billed twice. A mixin of `Journal`
(journal/store.py), which provides `_conn`, `clock` and `transaction`."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from phasegate.journal.records import ReviewRecord


class ReviewJournal:
    """Reviewer calls of the run's gates (the `reviews` table) and their ledger lines."""

    _conn: sqlite3.Connection

    def review(self, phase: str, gate_id: str, attempt: int) -> ReviewRecord | None:
        """The reviewer call of a gate for one phase attempt, if one was asked."""
        row = self._conn.execute("SELECT * FROM reviews WHERE phase=? AND gate_id=? AND attempt=?",
                                 (phase, gate_id, attempt)).fetchone()
        return None if row is None else ReviewRecord.from_row(row)

    def review_asked(self, phase: str, gate_id: str, attempt: int) -> None:
        """Commit that a reviewer is being asked, before its CLI starts: after a crash it is never asked again unseen."""
        with self.transaction():
            self._conn.execute("INSERT INTO reviews (phase, gate_id, attempt, asked_at) VALUES (?, ?, ?, ?)",
                               (phase, gate_id, attempt, self.clock()))

    def review_answered(self, phase: str, gate_id: str, attempt: int, *, answer: dict[str, Any],
                        audit: dict[str, str], cost_usd: float | None) -> None:
        """Commit a reviewer's answer, the sha256 of its audit files and its cost in one transaction (billed once)."""
        now = self.clock()
        with self.transaction():
            self._conn.execute(
                "UPDATE reviews SET answered_at=?, answer=?, audit=? WHERE phase=? AND gate_id=? AND attempt=?",
                (now, json.dumps(answer, sort_keys=True, default=str), json.dumps(audit, sort_keys=True),
                 phase, gate_id, attempt))
            if cost_usd is not None or answer.get("cost_unknown"):  # tokens without prices: marked, never "$0"
                note = f"gate {gate_id}" + ("" if cost_usd is not None else ": cost unknown (tokens reported, no "
                                            "prices set)")
                self._conn.execute("INSERT INTO ledger (ts, kind, phase, seconds, amount_usd, note)"
                                   " VALUES (?, 'review', ?, NULL, ?, ?)", (now, phase, cost_usd or 0.0, note))
