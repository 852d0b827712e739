"""The agent API's `status --json` document as pydantic models, and the types the event stream's models share.

They are the one source of `phasegate schema --status` (journal/event_schema.py: `--events`); the snapshot and
the printers write the documents, these models only describe them (tests validate real runs against the schemas).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.json_schema import SkipJsonSchema

from phasegate.floor.states import GateStatus, NextAction, PhaseState, SessionState
from phasegate.journal.snapshot import STATUS_SCHEMA_VERSION

DIALECT = "https://json-schema.org/draft/2020-12/schema"

# An ISO 8601 time with its UTC offset, e.g. 2026-12-01T11:14:42+00:00 (events add milliseconds).
Timestamp = Annotated[str, Field(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$",
                                 json_schema_extra={"format": "date-time"})]
# The documents are strict JSON: a number that is NaN or infinite (a budget of `inf`, say) reads as text.
Real = float | Literal["nan", "inf", "-inf"]
Count = Annotated[int, Field(ge=0)]
Absent = SkipJsonSchema[None]  # a key left out when it has no value (never written as null)


class StrictObject(BaseModel):
    """A JSON object with exactly these keys: a key the code writes without an entry here fails the tests."""

    model_config = ConfigDict(extra="forbid")


# -- the status document ------------------------------------------------------------------------------------------
class NextActionDoc(StrictObject):
    """What the run needs next (journal/next_step.py), decided once for status, checkpoints and resume."""

    action: NextAction = Field(description="resume, approve, waive_or_amend, retry, new_run or none.")
    requires_human: bool = Field(description="Only a person should take it (an approval, a waiver, an operator's stop).")
    reason: str = Field(description="Why, in one sentence.")
    commands: list[str] = Field(description="The exact commands, in order; TEXT, NEW.toml and SESSION are placeholders.")


class PendingGateDoc(StrictObject):
    """A gate that waits for an operator, with the commands that decide it."""

    gate_id: str
    phase: str
    summary: str
    approve_command: str
    waive_command: str


class RunningDoc(StrictObject):
    """The phase running now (as the journal says: after a crash it still reads as running until resumed)."""

    phase: str
    attempt: Count
    elapsed_s: float | None = Field(description="Seconds since the attempt started.")


class AmendmentDoc(StrictObject):
    """One new version of the plan (its diff is in the journal and the checkpoints)."""

    version: int = Field(ge=2)
    path: str = Field(description="The frozen plan, session.vN.toml.")
    sha256: str
    reason: str
    changes: list[str]
    ts: Timestamp


class PhaseDoc(StrictObject):
    """One phase: its state, attempts, timing and last progress."""

    id: str
    kind: str
    state: PhaseState
    attempts: Count
    started_at: Timestamp | None
    ended_at: Timestamp | None
    duration_s: float | None
    progress: Annotated[list[Count], Field(min_length=2, max_length=2)] | None = Field(
        description="[done, total] of the last progress the phase sent.")
    error: str | None


class GateDoc(StrictObject):
    """A gate's latest decision, with the operator's word applied (an approval passes it, a waiver waives it)."""

    gate_id: str
    phase: str
    attempt: Count
    stage: str = Field(description="pre (before the phase runs) or post (after it).")
    kind: str
    status: GateStatus
    summary: str
    evidence: dict[str, JsonValue]
    metrics: dict[str, JsonValue]
    waived: str | None = Field(description="The waiver's reason, when an operator waived it.")


class ArtifactDoc(StrictObject):
    """A file a phase made, relative to the run folder, with its digest."""

    phase: str
    path: str
    sha256: str
    size: Count


class OperatorActionDoc(StrictObject):
    """An approval, a waiver or an amendment, kept forever."""

    gate_id: str = Field(description="The gate, or `session` for an amendment.")
    action: Literal["approved", "waived", "amended"]
    note: str
    ts: Timestamp


class BudgetDoc(StrictObject):
    """Money: allocation, spent, left, burn rate and projection."""

    allocation_usd: Real | None
    gpu_hourly_usd: Real | None
    spent_usd: Real
    left_usd: Real | None
    wall_hours: Real
    burn_rate_usd_h: Real | None
    projected_total_usd: Real | None
    time_left_h: Real | None
    warn_at: Real
    warning: bool
    exhausted: bool
    per_phase_usd: dict[str, Real]


class InputWarningsDoc(StrictObject):
    """A phase's refused events and artifacts journaled as warnings, and those past the limit dropped."""

    warnings: Count
    dropped: Count


class StatusDocument(StrictObject):
    """The `phasegate status RUN_DIR --json` document."""

    model_config = ConfigDict(extra="forbid", title="phasegate status document")

    schema_version: Literal[STATUS_SCHEMA_VERSION] = Field(
        description="Raised when a key changes meaning or goes away; a new key does not raise it.")
    run_id: str
    session: str = Field(description="The session's name.")
    state: SessionState
    reason: str | None = Field(description="Why it is paused, stopped or failed.")
    run_dir: str
    controller_live: bool = Field(description="A controller holds the run now.")
    next_phase: str | None = Field(description="The first phase not yet passed.")
    resume_command: str
    next_action: NextActionDoc
    pending_gates: list[PendingGateDoc]
    running: RunningDoc | None
    stop_trigger: str | None = Field(description="What stopped it last (the incident's trigger), when stopped.")
    plan_version: int = Field(ge=1, description="1 for the session file the run started with, one more per amendment.")
    amendments: list[AmendmentDoc]
    phases: list[PhaseDoc]
    gates: list[GateDoc]
    artifacts: list[ArtifactDoc]
    metrics: dict[str, dict[str, float | None]] = Field(description="The last value of each metric, by phase.")
    operator_actions: list[OperatorActionDoc]
    budget: BudgetDoc
    checkpoint: str | None
    incident: str | None = Field(description="The latest incident report.")
    input_warnings: dict[str, InputWarningsDoc] = Field(description="By phase.")


def status_json_schema() -> dict[str, Any]:
    """The JSON Schema of the `status --json` document (`phasegate schema --status`)."""
    return {"$schema": DIALECT, **StatusDocument.model_json_schema(by_alias=True)}
