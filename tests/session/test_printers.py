"""The plain progress lines printed when there is no full-screen UI."""

from __future__ import annotations

import io

from phasegate.session.printers import human_printer, quiet_printer


def lines(*events: dict) -> list[str]:
    stream = io.StringIO()
    emit = human_printer(stream)
    for event in events:
        emit(event)
    return stream.getvalue().splitlines()


def test_each_session_state_has_its_own_mark():
    shown = lines({"type": "session_state", "state": "completed"},
                  {"type": "session_state", "state": "stopped", "reason": "gate qc failed"},
                  {"type": "session_state", "state": "paused", "reason": "waiting for an operator on review"})
    assert shown == ["✓ session completed", "■ session stopped — gate qc failed",
                     "‖ session paused — waiting for an operator on review"]


def test_events_without_a_line_print_nothing():
    assert lines({"type": "heartbeat", "phase": "train"}) == []


def quiet(events: list[dict], progress_every: float = 30.0) -> list[dict]:
    shown: list[dict] = []
    emit = quiet_printer(shown.append, progress_every=progress_every)
    for event in events:
        emit(event)
    return shown


def test_quiet_keeps_state_changes_and_drops_what_phases_say():
    events = [{"type": "session_state", "ts": 0.0, "phase": None, "state": "running"},
              {"type": "phase_started", "ts": 0.0, "phase": "a", "attempt": 1},
              {"type": "metric", "ts": 1.0, "phase": "a", "name": "loss", "value": 1.0},
              {"type": "log", "ts": 1.0, "phase": "a", "message": "step 1"},
              {"type": "phase_exited", "ts": 2.0, "phase": "a", "attempt": 1, "exit_code": 0, "artifacts": 0},
              {"type": "gate_decided", "ts": 2.0, "phase": "a", "gate_id": "qc", "status": "fail", "summary": "no"},
              {"type": "gate_waived", "ts": 3.0, "phase": None, "gate_id": "qc", "note": "known"},
              {"type": "session_amended", "ts": 3.0, "phase": None, "version": 2, "reason": "r"},
              {"type": "incident_written", "ts": 4.0, "phase": "a", "path": "i.md", "trigger": "gate_failed"},
              {"type": "checkpoint_written", "ts": 4.0, "phase": "a", "path": "c.md"}]
    assert [e["type"] for e in quiet(events)] == ["session_state", "phase_started", "gate_decided", "gate_waived",
                                                   "session_amended", "incident_written", "checkpoint_written"]


def test_quiet_spaces_each_phases_progress_and_shows_a_new_attempts_at_once():
    ticks = [{"type": "progress", "ts": float(t), "phase": "a", "done": t, "total": 100} for t in range(100)]
    restart = [{"type": "phase_started", "ts": 100.0, "phase": "a", "attempt": 2},
               {"type": "progress", "ts": 101.0, "phase": "a", "done": 1, "total": 100},
               {"type": "progress", "ts": 102.0, "phase": "b", "done": 1, "total": 100}]
    shown = quiet(ticks + restart)
    assert [(e["type"], e["ts"]) for e in shown] == [
        ("progress", 0.0), ("progress", 30.0), ("progress", 60.0), ("progress", 90.0),
        ("phase_started", 100.0), ("progress", 101.0), ("progress", 102.0)]
    assert len(quiet(ticks, progress_every=0)) == 100
