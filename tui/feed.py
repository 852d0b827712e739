"""Journal events and phase output as one-line entries of the live log panel."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from phasegate.floor.redact import Redactor
from phasegate.journal.events import SESSION_MARKS, EventKind, describe
from phasegate.journal.records import EventRecord
from phasegate.journal.sanitize import printable

# The progress bar shows progress, the metrics table metrics, and heartbeats say nothing a person reads:
# none is listed, so the phase's own output stays in view.
SKIPPED = frozenset({EventKind.PROGRESS, EventKind.METRIC, "heartbeat"})
# The feed marks every session state alike (its snapshots pin "■"); the header marks each state.
_FEED_MARKS = dict.fromkeys(SESSION_MARKS, "■")
# The journal masks what it stores; the panel masks again (token formats and this process's secrets).
_REDACTOR = Redactor()


def hms(ts: float) -> str:
    """An epoch time as HH:MM:SS UTC."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def feed_text(kind: str, phase: str | None, data: Mapping[str, Any] | str) -> str | None:
    """The panel's line for a journal event (`data` as a dict or as stored JSON text), or None to leave it out."""
    if kind in SKIPPED:
        return None
    return printable(_REDACTOR.redact(describe(EventRecord(0, 0.0, kind, phase, _data(data)), marks=_FEED_MARKS)))


def _data(data: Mapping[str, Any] | str) -> dict[str, Any]:
    """An event's data; JSON text that is no object reads as no data."""
    if not isinstance(data, str):
        return dict(data)
    try:
        loaded = json.loads(data)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}
