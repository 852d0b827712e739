"""The journal's event vocabulary: every kind of event it holds, and the one line of text each reads as."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from phasegate.journal.records import EventRecord


class EventKind(enum.StrEnum):
    """The kinds of journal event (the `type` of every published event)."""

    RUN_CREATED = "run_created"
    SESSION_STATE = "session_state"
    PHASE_STARTED = "phase_started"
    PHASE_EXITED = "phase_exited"
    PHASE_FINISHED = "phase_finished"
    PHASE_BLOCKED = "phase_blocked"  # written by earlier releases only: their runs still read well
    ATTEMPT_DISCARDED = "attempt_discarded"
    PROGRESS = "progress"
    METRIC = "metric"
    LOG = "log"
    GATE_DECIDED = "gate_decided"
    GATE_APPROVED = "gate_approved"
    GATE_WAIVED = "gate_waived"
    PARAMS_CHANGED = "params_changed"
    CHECKPOINT_WRITTEN = "checkpoint_written"
    INCIDENT_WRITTEN = "incident_written"
    EARLY_STOP_REQUESTED = "early_stop_requested"
    INVALID_EVENT = "invalid_event"  # a line of a phase's events pipe refused (a warning; the phase goes on)
    ARTIFACT_REFUSED = "artifact_refused"  # an artifact outside the phase's artifact folder, never read
    EVENTS_DROPPED = "events_dropped"  # warnings and phase events past the per-attempt limits, counted instead
    BUDGET_WARNING = "budget_warning"
    RECOVERED = "recovered"
    SESSION_AMENDED = "session_amended"  # an operator adopted a new version of the plan (session.vN.toml)
    NOTIFIED = "notified"  # a `[[notify]]` table's message for the event `for_seq` was sent
    NOTIFY_FAILED = "notify_failed"  # it could not be sent (after its retries); the run went on
    HOOK_FAILED = "hook_failed"  # a `[[hooks]]` command for the event `for_seq` failed or timed out
    POD_STOPPED = "pod_stopped"  # the pod was told to stop (journaled first): from here on it bills nothing
    POD_STOP_FAILED = "pod_stop_failed"  # the pod could not be stopped: it still bills, and the run is as it was


# One mark per session state, never colour alone: a stopped run must not look like a finished one.
SESSION_MARKS: Mapping[str, str] = {"created": "○", "running": "▶", "paused": "‖", "completed": "✓",
                                    "stopped": "■", "failed": "✗"}

Render = Callable[[str | None, dict[str, Any]], str]

_TEXT: dict[str, Render] = {
    EventKind.RUN_CREATED: lambda p, d: f"○ run {d.get('run_id')} created",
    EventKind.PHASE_STARTED: lambda p, d: f"▶ {p}: attempt {d.get('attempt')} started",
    EventKind.PHASE_EXITED: lambda p, d: f"  {p}: exited {d.get('exit_code')}, {d.get('artifacts')} artifact(s)",
    EventKind.PHASE_FINISHED: lambda p, d: (f"✓ {p}: passed" if d.get("state") == "passed"
                                            else f"✗ {p}: failed — {d.get('reason')}"),
    EventKind.PHASE_BLOCKED: lambda p, d: f"✗ {p}: blocked — {d.get('reason')}",
    EventKind.ATTEMPT_DISCARDED: lambda p, d: f"↺ {p}: attempt {d.get('attempt')} discarded ({d.get('reason')})",
    EventKind.METRIC: lambda p, d: f"  {p}: {d.get('name')} = {d.get('value')}",
    EventKind.LOG: lambda p, d: f"  {p}: {d.get('message')}" if p else f"  {d.get('message')}",
    EventKind.GATE_DECIDED: lambda p, d: (f"  gate {d.get('gate_id')}: {str(d.get('status')).upper()} "
                                          f"— {d.get('summary')}"),
    EventKind.GATE_APPROVED: lambda p, d: (f"  gate {d.get('gate_id')} APPROVED"
                                           + (f": {d['note']}" if d.get("note") else "")),
    EventKind.GATE_WAIVED: lambda p, d: f"  gate {d.get('gate_id')} WAIVED: {d.get('note')}",
    EventKind.CHECKPOINT_WRITTEN: lambda p, d: f"  checkpoint {Path(str(d.get('path'))).name}",
    EventKind.INCIDENT_WRITTEN: lambda p, d: (f"! incident report {Path(str(d.get('path'))).name} "
                                              f"({d.get('trigger')})"),
    EventKind.EARLY_STOP_REQUESTED: lambda p, d: (f"! {p}: early stop requested ({d.get('trigger')}): "
                                                  f"{d.get('summary')}"),
    EventKind.INVALID_EVENT: lambda p, d: f"! {p}: event refused ({d.get('error')})",
    EventKind.ARTIFACT_REFUSED: lambda p, d: f"! {p}: artifact {d.get('path')} refused ({d.get('error')})",
    EventKind.EVENTS_DROPPED: lambda p, d: _dropped_line(p, d),
    EventKind.POD_STOPPED: lambda p, d: (f"⏻ pod stopped ({d.get('provider')}, run {d.get('state')}): "
                                         "it bills no more"),
    EventKind.POD_STOP_FAILED: lambda p, d: (f"! pod not stopped ({d.get('provider')}, run {d.get('state')}): "
                                             f"{d.get('error')}; it still bills"),
    EventKind.NOTIFIED: lambda p, d: f"  notified {d.get('event')} (event {d.get('for_seq')}) to notify[{d.get('target')}]",
    EventKind.NOTIFY_FAILED: lambda p, d: (f"! notification of {d.get('event')} (event {d.get('for_seq')}) to "
                                           f"notify[{d.get('target')}] failed: {d.get('error')}"),
    EventKind.HOOK_FAILED: lambda p, d: (f"! hook[{d.get('hook')}] on {d.get('event')} (event {d.get('for_seq')}) "
                                         f"failed: {d.get('error')}"),
    EventKind.SESSION_AMENDED: lambda p, d: (f"✎ plan amended to v{d.get('version')}: {d.get('reason')}"
                                             + (f" ({'; '.join(map(str, d.get('changes') or []))})"
                                                if d.get("changes") else "")),
}


def _dropped_line(phase: str | None, data: dict[str, Any]) -> str:
    """How many events of an attempt were counted, not journaled: refused ones past the warnings, valid ones past
    the journal's limits (log lines, stop requests, metric names and history)."""
    limited = data.get("limited") or 0
    if not limited:
        return (f"! {phase}: {data.get('dropped')} more refused event(s) of attempt {data.get('attempt')} "
                f"dropped, not journaled")
    return (f"! {phase}: {data.get('dropped')} more event(s) of attempt {data.get('attempt')} dropped, not "
            f"journaled ({limited} past the journal's limits per attempt)")


def _session_line(data: dict[str, Any], marks: Mapping[str, str]) -> str:
    """A session state change with its mark and its reason, if any."""
    state = data.get("state")
    return f"{marks.get(str(state), '·')} session {state}" + (f" — {data['reason']}" if data.get("reason") else "")


def describe(event: EventRecord, *, marks: Mapping[str, str] = SESSION_MARKS) -> str:
    """The one-line human text of a journal event; `marks` gives each session state its symbol.

    Every human front end writes this text; each chooses which kinds it shows. A kind without
    its own text (one this release does not know, say) reads as its name and phase.
    """
    if event.type == EventKind.SESSION_STATE:
        return _session_line(event.data, marks)
    render = _TEXT.get(event.type)
    return render(event.phase, event.data) if render else f"  {event.type}" + (f" ({event.phase})" if event.phase else "")
