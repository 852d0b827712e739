"""The journal's typed, frozen records: what every reader gets instead of a database row."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from phasegate.floor.errors import JournalError
from phasegate.floor.states import AttemptState, PhaseState, SessionState

StateT = TypeVar("StateT", SessionState, PhaseState, AttemptState)


def _state(kind: type[StateT], value: object) -> StateT:
    """A state read back from the journal; JournalError for a value phasegate never writes."""
    try:
        return kind(value)
    except ValueError:
        raise JournalError(f"the journal holds {kind.__name__} {value!r}, which phasegate never writes; "
                           "it was edited or damaged (`phasegate recover RUN_DIR` lists what is kept)") from None


@dataclass(frozen=True)
class RunRecord:
    """The run row: identity, state and where the session file came from."""

    run_id: str
    name: str
    state: SessionState
    reason: str | None
    created_at: float
    updated_at: float
    spec_sha256: str
    session_dir: Path
    spec_path: Path

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> RunRecord:
        return cls(r["run_id"], r["name"], _state(SessionState, r["state"]), r["reason"], r["created_at"], r["updated_at"],
                   r["spec_sha256"], Path(r["session_dir"]), Path(r["spec_path"]))


@dataclass(frozen=True)
class PhaseRecord:
    """One phase of the run: its state, attempts, timing and last progress."""

    id: str
    position: int
    kind: str
    state: PhaseState
    attempts: int
    failures: int
    started_at: float | None
    ended_at: float | None
    progress_done: int | None
    progress_total: int | None
    progress_step: str | None
    last_activity: float | None
    error: str | None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> PhaseRecord:
        return cls(r["id"], r["position"], r["kind"], _state(PhaseState, r["state"]), r["attempts"], r["failures"],
                   r["started_at"], r["ended_at"], r["progress_done"], r["progress_total"], r["progress_step"],
                   r["last_activity"], r["error"])


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a phase, with the process that ran it."""

    phase: str
    attempt: int
    state: AttemptState
    input_hash: str | None
    pid: int | None
    pid_start: str | None
    started_at: float
    ended_at: float | None
    exit_code: int | None
    reason: str | None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> AttemptRecord:
        return cls(r["phase"], r["attempt"], _state(AttemptState, r["state"]), r["input_hash"], r["pid"], r["pid_start"],
                   r["started_at"], r["ended_at"], r["exit_code"], r["reason"])


@dataclass(frozen=True)
class GateRecord:
    """One journaled gate decision with its evidence."""

    gate_id: str
    phase: str
    attempt: int
    stage: str
    kind: str
    status: str
    summary: str
    evidence: dict[str, Any]
    metrics: dict[str, Any]
    decided_at: float

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> GateRecord:
        return cls(r["gate_id"], r["phase"], r["attempt"], r["stage"], r["kind"], r["status"], r["summary"],
                   json.loads(r["evidence"]), json.loads(r["metrics"]), r["decided_at"])


@dataclass(frozen=True)
class OperatorAction:
    """An approval or a waiver, kept forever; `phase` None when the command named the gate id only."""

    gate_id: str
    action: str
    note: str
    ts: float
    phase: str | None = None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> OperatorAction:
        return cls(r["gate_id"], r["action"], r["note"], r["ts"], r["phase"])


@dataclass(frozen=True)
class ReviewRecord:
    """One reviewer call of a gate for one phase attempt: asked before the call, answered after.

    The answer is what the gate trusts; the files of `reviews/<gate>-<n>/` are an audit copy whose sha256 are in `audit`.
    """

    phase: str
    gate_id: str
    attempt: int
    asked_at: float
    answered_at: float | None
    answer: dict[str, Any] | None
    audit: dict[str, str]

    @property
    def answered(self) -> bool:
        """Whether the reviewer's answer was recorded (else the call was cut short)."""
        return self.answer is not None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> ReviewRecord:
        answer = json.loads(r["answer"]) if r["answer"] is not None else None
        return cls(r["phase"], r["gate_id"], r["attempt"], r["asked_at"], r["answered_at"], answer,
                   json.loads(r["audit"]) if r["audit"] else {})


@dataclass(frozen=True)
class CommandRecord:
    """A command from outside the controller (stop, approve, waive) and what became of it."""

    id: int
    ts: float
    kind: str
    args: dict[str, Any]
    handled_at: float | None
    result: str | None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> CommandRecord:
        return cls(r["id"], r["ts"], r["kind"], json.loads(r["args"]), r["handled_at"], r["result"])


@dataclass(frozen=True)
class EventRecord:
    """One journal event as stored: its sequence number, time, type, phase and data."""

    seq: int
    ts: float
    type: str
    phase: str | None
    data: dict[str, Any]

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> EventRecord:
        return cls(r["seq"], r["ts"], r["type"], r["phase"], json.loads(r["data"]))

    def published(self) -> dict[str, Any]:
        """The event as listeners (the headless printer, the progress lines) get it: one flat object."""
        return {"seq": self.seq, "ts": self.ts, "type": self.type, "phase": self.phase, **self.data}

    @classmethod
    def from_published(cls, event: Mapping[str, Any]) -> EventRecord:
        """The record back from a published event (`seq` and `ts` may be left out)."""
        data = {k: v for k, v in event.items() if k not in ("seq", "ts", "type", "phase")}
        return cls(event.get("seq", 0), event.get("ts", 0.0), event["type"], event.get("phase"), data)
