"""Journal events and phase output as one-line entries of the live log panel."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The progress bar shows progress and heartbeats say nothing a person reads, so neither is listed.
SKIPPED = frozenset({"progress", "heartbeat"})

_TEXT: dict[str, Callable[[str | None, dict[str, Any]], str]] = {
    "run_created": lambda p, d: f"○ run {d.get('run_id')} created",
    "session_state": lambda p, d: f"■ session {d.get('state')}" + (f" — {d['reason']}" if d.get("reason") else ""),
    "phase_started": lambda p, d: f"▶ {p}: attempt {d.get('attempt')} started",
    "phase_exited": lambda p, d: f"  {p}: exited {d.get('exit_code')}, {d.get('artifacts')} artifact(s)",
    "phase_finished": lambda p, d: (f"✓ {p}: passed" if d.get("state") == "passed"
                                    else f"✗ {p}: failed — {d.get('reason')}"),
    "phase_blocked": lambda p, d: f"✗ {p}: blocked — {d.get('reason')}",
    "attempt_discarded": lambda p, d: f"↺ {p}: attempt {d.get('attempt')} discarded ({d.get('reason')})",
    "metric": lambda p, d: f"  {p}: {d.get('name')} = {d.get('value')}",
    "log": lambda p, d: f"  {p}: {d.get('message')}",
    "gate_decided": lambda p, d: f"  gate {d.get('gate_id')}: {str(d.get('status')).upper()} — {d.get('summary')}",
    "gate_approved": lambda p, d: f"  gate {d.get('gate_id')} APPROVED" + (f": {d['note']}" if d.get("note") else ""),
    "gate_waived": lambda p, d: f"  gate {d.get('gate_id')} WAIVED: {d.get('note')}",
    "checkpoint_written": lambda p, d: f"  checkpoint {Path(str(d.get('path'))).name}",
    "incident_written": lambda p, d: f"! incident report {Path(str(d.get('path'))).name} ({d.get('trigger')})",
    "early_stop_requested": lambda p, d: f"! {p}: early stop requested ({d.get('trigger')}): {d.get('summary')}",
}


def hms(ts: float) -> str:
    """An epoch time as HH:MM:SS UTC."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def describe(kind: str, phase: str | None, data: dict[str, Any]) -> str | None:
    """One readable line for a journal event, or None for events the panel leaves out."""
    if kind in SKIPPED:
        return None
    render = _TEXT.get(kind)
    return render(phase, data) if render else f"  {kind}" + (f" ({phase})" if phase else "")
