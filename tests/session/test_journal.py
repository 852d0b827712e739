"""The journal: WAL, durable settings, schema version and corruption detected with clear errors."""

import sqlite3

import pytest

from phasegate.floor.errors import JournalError
from phasegate.floor.states import PhaseState, SessionState
from phasegate.journal.store import Journal


def make(tmp_path):
    return Journal.create(tmp_path / "state.db", run_id="r", name="n", spec_sha256="x" * 64,
                          session_dir=tmp_path, spec_path=tmp_path / "s.toml", phases=[("a", "command"), ("b", "command")])


def test_wal_and_full_sync(tmp_path):
    journal = make(tmp_path)
    durability = journal.durability()
    assert durability["journal_mode"] == "wal"
    assert durability["synchronous"] == 2  # FULL


def test_attempt_lifecycle_and_events(tmp_path):
    journal = make(tmp_path)
    journal.set_session_state(SessionState.RUNNING)
    attempt = journal.begin_attempt("a", "hash")
    assert attempt == 1 and journal.phase_state("a") == PhaseState.RUNNING
    assert [r.attempt for r in journal.open_attempts()] == [1]
    journal.mark_exited("a", 1, 0, [("artifacts/a/x", "f" * 64, 3)])
    assert journal.open_attempts() == [] and journal.exited_attempt("a") == 1
    journal.finish_attempt("a", 1, passed=True)
    types = [r.type for r in journal.events_since(0)]
    assert types == ["run_created", "session_state", "phase_started", "phase_exited", "phase_finished"]


def test_completed_phase_cannot_start_again(tmp_path):
    journal = make(tmp_path)
    journal.begin_attempt("a", "h")
    journal.finish_attempt("a", 1, passed=True)
    with pytest.raises(Exception, match="cannot go from passed to running"):
        journal.begin_attempt("a", "h")
    assert journal.phase("a").attempts == 1  # the refused change left nothing behind


def test_schema_version_mismatch_is_a_clear_error(tmp_path):
    make(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(JournalError, match="schema version 99"):
        Journal.open(tmp_path / "state.db")


def test_garbage_file_is_reported_not_restarted(tmp_path):
    (tmp_path / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="unreadable.*phasegate recover"):
        Journal.open(tmp_path / "state.db")


def test_a_review_whose_cost_is_unknown_is_marked_in_the_ledger_not_billed_as_free(tmp_path):
    journal = make(tmp_path)
    for gate, cost, unknown in (("g.priced", 0.25, False), ("g.tokens", None, True), ("g.free", None, False)):
        journal.review_asked("a", gate, 1)
        journal.review_answered("a", gate, 1, answer={"cost_unknown": unknown}, audit={}, cost_usd=cost)
    rows = journal._conn.execute("SELECT amount_usd, note FROM ledger WHERE kind='review' ORDER BY seq").fetchall()
    assert [(r["amount_usd"], r["note"]) for r in rows] == [
        (0.25, "gate g.priced"), (0.0, "gate g.tokens: cost unknown (tokens reported, no prices set)")]
    assert journal.spent_usd() == 0.25
