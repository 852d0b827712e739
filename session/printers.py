"""Front ends without a screen: the headless JSON-lines printer and a plain human log."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from phasegate.journal.events import EventKind, describe
from phasegate.journal.records import EventRecord


def json_lines_printer(stream: TextIO = sys.stdout):
    """One JSON object per journal event on stdout: the machine-readable stream agents consume."""

    def emit(event: dict[str, Any]) -> None:
        out = {**event, "ts": datetime.fromtimestamp(event["ts"], UTC).isoformat(timespec="milliseconds")}
        stream.write(json.dumps(out, sort_keys=False, default=str) + "\n")
        stream.flush()

    return emit


# The kinds a terminal log shows (the UI's feed shows more); their text is the journal's own.
HUMAN_KINDS = frozenset({
    EventKind.PHASE_STARTED, EventKind.PHASE_FINISHED, EventKind.GATE_DECIDED, EventKind.SESSION_STATE,
    EventKind.INCIDENT_WRITTEN, EventKind.ATTEMPT_DISCARDED, EventKind.LOG, EventKind.GATE_APPROVED,
    EventKind.GATE_WAIVED,
})


def human_printer(stream: TextIO = sys.stderr):
    """Readable progress lines for a terminal without the full-screen UI."""

    def emit(event: dict[str, Any]) -> None:
        record = EventRecord.from_published(event)
        if record.type in HUMAN_KINDS:
            stream.write(describe(record) + "\n")
            stream.flush()

    return emit
