"""Front ends without a screen: the headless JSON-lines printer and a plain human log."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO


def json_lines_printer(stream: TextIO = sys.stdout):
    """One JSON object per journal event on stdout: the machine-readable stream agents consume."""

    def emit(event: dict[str, Any]) -> None:
        out = {**event, "ts": datetime.fromtimestamp(event["ts"], UTC).isoformat(timespec="milliseconds")}
        stream.write(json.dumps(out, sort_keys=False, default=str) + "\n")
        stream.flush()

    return emit


# The same marks as the terminal UI's header: a stopped run must not look like a finished one.
_SESSION_MARKS = {"running": "▶", "paused": "‖", "completed": "✓", "stopped": "■", "failed": "✗"}

_HUMAN = {
    "phase_started": lambda e: f"▶ {e['phase']}: attempt {e['attempt']} started",
    "phase_finished": lambda e: (f"✓ {e['phase']}: passed" if e["state"] == "passed"
                                 else f"✗ {e['phase']}: failed — {e.get('reason')}"),
    "gate_decided": lambda e: f"  gate {e['gate_id']}: {e['status'].upper()} — {e['summary']}",
    "session_state": lambda e: f"{_SESSION_MARKS.get(e['state'], '·')} session {e['state']}"
                               + (f" — {e['reason']}" if e.get("reason") else ""),
    "incident_written": lambda e: f"  incident report: {e['path']}",
    "attempt_discarded": lambda e: f"↺ {e['phase']}: attempt {e['attempt']} discarded ({e['reason']})",
    "log": lambda e: f"  {e['phase']}: {e['message']}",
    "gate_approved": lambda e: f"  gate {e['gate_id']} approved",
    "gate_waived": lambda e: f"  gate {e['gate_id']} WAIVED: {e['note']}",
}


def human_printer(stream: TextIO = sys.stderr):
    """Readable progress lines for a terminal without the full-screen UI."""

    def emit(event: dict[str, Any]) -> None:
        render = _HUMAN.get(event["type"])
        if render is not None:
            stream.write(render(event) + "\n")
            stream.flush()

    return emit
