"""Front ends without a screen: the headless JSON-lines printer, its quiet filter and a plain human log."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from phasegate.floor.redact import Redactor
from phasegate.journal.events import EventKind, describe
from phasegate.journal.records import EventRecord
from phasegate.journal.sanitize import clean, printable

# The journal masks what it stores; a printer masks again (token formats and this process's secrets)
# and never cuts: what it prints is already bounded.
_WHOLE = 10**9


def json_lines_printer(stream: TextIO = sys.stdout, redactor: Redactor | None = None):
    """One JSON object per journal event on stdout: the machine-readable stream agents consume (strict JSON)."""
    mask = (redactor or Redactor()).redact

    def emit(event: dict[str, Any]) -> None:
        out = {**event, "ts": datetime.fromtimestamp(event["ts"], UTC).isoformat(timespec="milliseconds")}
        stream.write(json.dumps(clean(out, mask, _WHOLE), sort_keys=False, allow_nan=False) + "\n")
        stream.flush()

    return emit


# What `--quiet` keeps of the stream: every change of state an agent acts on, nothing a phase says as it works.
QUIET_KINDS = frozenset({
    EventKind.RUN_CREATED, EventKind.SESSION_STATE, EventKind.PHASE_STARTED, EventKind.PHASE_FINISHED,
    EventKind.PHASE_BLOCKED, EventKind.ATTEMPT_DISCARDED, EventKind.GATE_DECIDED, EventKind.GATE_APPROVED,
    EventKind.GATE_WAIVED, EventKind.PARAMS_CHANGED, EventKind.SESSION_AMENDED, EventKind.EARLY_STOP_REQUESTED,
    EventKind.BUDGET_WARNING, EventKind.INCIDENT_WRITTEN, EventKind.CHECKPOINT_WRITTEN, EventKind.RECOVERED,
    EventKind.POD_STOPPED, EventKind.POD_STOP_FAILED,
})
PROGRESS_EVERY_S = 30.0


def quiet_printer(emit: Callable[[dict[str, Any]], None], *, progress_every: float = PROGRESS_EVERY_S):
    """`emit` for the QUIET_KINDS only, and for a phase's progress at most once every `progress_every` seconds
    of journal time (metrics, log lines and warnings stay in the journal)."""
    shown_at: dict[str | None, float] = {}  # per phase: when its last progress was shown

    def filtered(event: dict[str, Any]) -> None:
        if event["type"] == EventKind.PROGRESS:
            last = shown_at.get(event["phase"])
            if last is not None and event["ts"] - last < progress_every:
                return
            shown_at[event["phase"]] = event["ts"]
        elif event["type"] not in QUIET_KINDS:
            return
        elif event["type"] == EventKind.PHASE_STARTED:  # a new attempt shows its first progress at once
            shown_at.pop(event["phase"], None)
        emit(event)

    return filtered


# The kinds a terminal log shows (the UI's feed shows more); their text is the journal's own.
HUMAN_KINDS = frozenset({
    EventKind.PHASE_STARTED, EventKind.PHASE_FINISHED, EventKind.GATE_DECIDED, EventKind.SESSION_STATE,
    EventKind.INCIDENT_WRITTEN, EventKind.ATTEMPT_DISCARDED, EventKind.LOG, EventKind.GATE_APPROVED,
    EventKind.GATE_WAIVED, EventKind.INVALID_EVENT, EventKind.ARTIFACT_REFUSED, EventKind.EVENTS_DROPPED,
    EventKind.POD_STOPPED, EventKind.POD_STOP_FAILED,
})


def human_printer(stream: TextIO = sys.stderr, redactor: Redactor | None = None):
    """Readable progress lines for a terminal without the full-screen UI."""
    mask = (redactor or Redactor()).redact

    def emit(event: dict[str, Any]) -> None:
        record = EventRecord.from_published(event)
        if record.type in HUMAN_KINDS:
            stream.write(printable(mask(describe(record))) + "\n")  # one line, whatever a phase sent
            stream.flush()

    return emit
