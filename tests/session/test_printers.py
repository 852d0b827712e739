"""The plain progress lines printed when there is no full-screen UI."""

from __future__ import annotations

import io

from phasegate.session.printers import human_printer


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
