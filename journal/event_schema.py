"""The agent API's headless event stream as pydantic models: one per journal event kind (`phasegate schema
--events`); the printers write the events, these models only describe them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, JsonValue, TypeAdapter

from phasegate.floor.states import GateStatus, PhaseState, SessionState
from phasegate.journal.events import EventKind
from phasegate.journal.status_schema import DIALECT, Absent, Count, Real, StrictObject, Timestamp


class _Event(StrictObject):
    """The envelope every event has; its data keys sit beside these in the same object."""

    seq: int = Field(ge=1, description="The journal's sequence number: increasing, never reused.")
    ts: Timestamp
    phase: str | None = Field(description="The phase it is about, or null for the session.")


class RunCreated(_Event):
    """The run folder and its journal exist."""

    type: Literal[EventKind.RUN_CREATED]
    run_id: str
    name: str


class SessionStateChanged(_Event):
    """The session moved to a new state."""

    type: Literal[EventKind.SESSION_STATE]
    state: SessionState
    reason: str | None
    trigger: str | Absent = Field(None, description="What stopped it (with state stopped).")


class PhaseStarted(_Event):
    """An attempt of a phase began (its intent is committed before its process starts)."""

    type: Literal[EventKind.PHASE_STARTED]
    attempt: Count


class PhaseExited(_Event):
    """An attempt's process succeeded; its gates have not decided yet."""

    type: Literal[EventKind.PHASE_EXITED]
    attempt: Count
    exit_code: int
    artifacts: Count = Field(description="How many artifacts it made.")


class PhaseFinished(_Event):
    """A phase passed or failed."""

    type: Literal[EventKind.PHASE_FINISHED]
    attempt: Count
    state: Literal[PhaseState.PASSED, PhaseState.FAILED]
    exit_code: int | None
    reason: str | None


class PhaseBlocked(_Event):
    """Written by earlier releases only (their runs still read well): a phase that could not start."""

    model_config = ConfigDict(extra="allow")
    type: Literal[EventKind.PHASE_BLOCKED]
    reason: str | None = None


class AttemptDiscarded(_Event):
    """An attempt a crash interrupted was thrown away on resume; the phase is pending again."""

    type: Literal[EventKind.ATTEMPT_DISCARDED]
    attempt: Count
    reason: str


class Progress(_Event):
    """How far the phase is (the journal keeps at most 4 a second, the latest always)."""

    type: Literal[EventKind.PROGRESS]
    done: Count
    total: Count
    step: str | None


class Metric(_Event):
    """A metric's new value (null for NaN)."""

    type: Literal[EventKind.METRIC]
    name: str
    value: float | None


class Log(_Event):
    """A line of text from a phase or from phasegate."""

    type: Literal[EventKind.LOG]
    message: str


class GateDecided(_Event):
    """A gate decided: pass, fail, warn or pending (waiting for an operator)."""

    type: Literal[EventKind.GATE_DECIDED]
    gate_id: str
    status: GateStatus
    summary: str


class GateApproved(_Event):
    """An operator approved a gate (`phase` names the phase when the approval did)."""

    type: Literal[EventKind.GATE_APPROVED]
    gate_id: str
    note: str


class GateWaived(_Event):
    """An operator waived a gate, forever (`phase` names the phase when the waiver did)."""

    type: Literal[EventKind.GATE_WAIVED]
    gate_id: str
    note: str = Field(description="The waiver's reason.")


class ParamsChanged(_Event):
    """A reviewer's accepted parameter changes, kept for the phase's next attempts."""

    type: Literal[EventKind.PARAMS_CHANGED]
    gate_id: str
    changes: dict[str, JsonValue]


class CheckpointWritten(_Event):
    """A markdown checkpoint was written."""

    type: Literal[EventKind.CHECKPOINT_WRITTEN]
    path: str


class IncidentWritten(_Event):
    """An incident report was written (the run stops)."""

    type: Literal[EventKind.INCIDENT_WRITTEN]
    path: str
    trigger: str


class EarlyStopRequested(_Event):
    """A phase asked for an early stop."""

    type: Literal[EventKind.EARLY_STOP_REQUESTED]
    trigger: str | None
    summary: str | None


class InvalidEvent(_Event):
    """A line of a phase's events pipe was refused (a warning; the phase goes on)."""

    type: Literal[EventKind.INVALID_EVENT]
    error: str
    line: str


class ArtifactRefused(_Event):
    """An artifact outside the phase's artifact folder, never read."""

    type: Literal[EventKind.ARTIFACT_REFUSED]
    path: str
    error: str


class EventsDropped(_Event):
    """How many events of an attempt were counted, not journaled (past the per-attempt limits)."""

    type: Literal[EventKind.EVENTS_DROPPED]
    attempt: Count
    dropped: Count
    limited: Count = Field(description="Of those, valid events past the journal's limits.")


class BudgetWarning(_Event):
    """Spending reached the session's `budget_warn_at` fraction of its budget."""

    type: Literal[EventKind.BUDGET_WARNING]
    spent_usd: Real
    allocation_usd: Real


class Recovered(_Event):
    """This run was made by `phasegate recover` from a damaged one."""

    type: Literal[EventKind.RECOVERED]
    from_: str = Field(alias="from", description="The damaged run's folder.")
    phases: list[str] = Field(description="The completed phases imported.")


class SessionAmended(_Event):
    """An operator adopted a new version of the plan."""

    type: Literal[EventKind.SESSION_AMENDED]
    version: int = Field(ge=2)
    path: str
    sha256: str
    reason: str
    diff: str
    changes: list[str]


class Notified(_Event):
    """A `[[notify]]` table's message about an earlier event was sent."""

    type: Literal[EventKind.NOTIFIED]
    for_seq: int = Field(ge=1, description="The `seq` of the event the message was about.")
    event: str = Field(description="What it told: paused, stopped, completed, budget_warning, incident or stall.")
    target: Count = Field(description="Which `[[notify]]` table (0 for the first).")
    late: bool = Field(description="Sent by a later controller: the one that journaled the event ended first.")


class NotifyFailed(_Event):
    """A `[[notify]]` table's message could not be sent, after its retries; the run went on."""

    type: Literal[EventKind.NOTIFY_FAILED]
    for_seq: int = Field(ge=1, description="The `seq` of the event the message was about.")
    event: str
    target: Count
    error: str = Field(description="Why, per URL (secrets masked).")


class HookFailed(_Event):
    """A `[[hooks]]` command failed, could not start or ran past its timeout; the run went on."""

    type: Literal[EventKind.HOOK_FAILED]
    for_seq: int = Field(ge=1, description="The `seq` of the event it ran for.")
    event: str
    hook: Count = Field(description="Which `[[hooks]]` table (0 for the first).")
    error: str


class PodStopped(_Event):
    """The pod was told to stop (`[pod]`), journaled before the stop ran: from here on it bills nothing."""

    type: Literal[EventKind.POD_STOPPED]
    provider: Literal["runpod", "command"]
    state: Literal[SessionState.PAUSED, SessionState.STOPPED, SessionState.COMPLETED] = Field(
        description="The run's state when it was stopped.")
    argv: list[str] = Field(description="The command that stopped it.")


class PodStopFailed(_Event):
    """The pod could not be stopped: it still bills, and a resume bills the pause from here on."""

    type: Literal[EventKind.POD_STOP_FAILED]
    provider: Literal["runpod", "command"]
    state: Literal[SessionState.PAUSED, SessionState.STOPPED, SessionState.COMPLETED]
    error: str


EVENT_MODELS: tuple[type[_Event], ...] = (
    RunCreated, SessionStateChanged, PhaseStarted, PhaseExited, PhaseFinished, PhaseBlocked, AttemptDiscarded,
    Progress, Metric, Log, GateDecided, GateApproved, GateWaived, ParamsChanged, CheckpointWritten, IncidentWritten,
    EarlyStopRequested, InvalidEvent, ArtifactRefused, EventsDropped, BudgetWarning, Recovered, SessionAmended,
    Notified, NotifyFailed, HookFailed, PodStopped, PodStopFailed,
)
HeadlessEvent = Annotated[
    RunCreated | SessionStateChanged | PhaseStarted | PhaseExited | PhaseFinished | PhaseBlocked | AttemptDiscarded
    | Progress | Metric | Log | GateDecided | GateApproved | GateWaived | ParamsChanged | CheckpointWritten
    | IncidentWritten | EarlyStopRequested | InvalidEvent | ArtifactRefused | EventsDropped | BudgetWarning
    | Recovered | SessionAmended | Notified | NotifyFailed | HookFailed | PodStopped | PodStopFailed,
    Field(discriminator="type"),
]


def event_kind(model: type[_Event]) -> EventKind:
    """The `type` an event model describes."""
    return EventKind(model.model_fields["type"].annotation.__args__[0])


def events_json_schema() -> dict[str, Any]:
    """The JSON Schema of one line of the `--headless` stream (`phasegate schema --events`): one of the kinds."""
    schema = TypeAdapter(HeadlessEvent).json_schema(by_alias=True)
    return {"$schema": DIALECT, "title": "phasegate headless event",
            "description": "One JSON object per line: seq, ts, type and phase, then the data keys of its type.",
            **schema}
