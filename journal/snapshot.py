"""A frozen, read-only view of a run, built from its journal: what status, checkpoints and the TUI show."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phasegate.floor.rundir import RunDir, controller_is_live
from phasegate.floor.states import SessionState, effective_gate_status
from phasegate.journal.events import EventKind
from phasegate.journal.next_step import NextStep, approve_command, next_step, waive_command
from phasegate.journal.records import EventRecord, GateRecord
from phasegate.journal.sanitize import Mask, clean
from phasegate.journal.store import Journal

# What a phase's refused events and artifacts count as (the journal's warnings about phase input).
WARNING_KINDS = (EventKind.INVALID_EVENT, EventKind.ARTIFACT_REFUSED)
# The version of the `status --json` document (`phasegate schema --status`): raised when a field changes meaning
# or goes away; new fields do not raise it.
STATUS_SCHEMA_VERSION = 1
# Gate evidence is shown whole (the checkpoint cuts its own lines); only secrets and NaN are changed.
WHOLE = 10**9


def iso(ts: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC, or None."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class PhaseView:
    id: str
    kind: str
    state: str
    attempts: int
    started_at: float | None
    ended_at: float | None
    progress: tuple[int, int] | None
    progress_step: str | None
    error: str | None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class GateView:
    gate_id: str
    phase: str
    attempt: int
    stage: str
    kind: str
    status: str
    summary: str
    evidence: dict[str, Any]
    metrics: dict[str, Any]
    waived: str | None = None  # the waiver's reason, when an operator waived it


@dataclass(frozen=True)
class ArtifactView:
    phase: str
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class GpuView:
    """The latest GPU reading, its recent memory history and the peak; or why there is none."""

    available: bool
    reason: str | None = None
    name: str | None = None
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None
    util_pct: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    history_mem_pct: tuple[float, ...] = ()
    peak_mem_mb: float | None = None

    @property
    def mem_pct(self) -> float | None:
        if not self.mem_used_mb or not self.mem_total_mb:
            return None
        return 100.0 * self.mem_used_mb / self.mem_total_mb


GPU_HISTORY = 60


@dataclass(frozen=True)
class RunSnapshot:
    run_id: str
    name: str
    state: str
    reason: str | None
    run_dir: Path
    session_dir: Path
    created_at: float
    updated_at: float
    phases: tuple[PhaseView, ...]
    gates: tuple[GateView, ...]
    artifacts: tuple[ArtifactView, ...]
    metrics: dict[str, dict[str, float]]
    operator_actions: tuple[dict[str, Any], ...]
    budget: dict[str, Any]
    controller_live: bool
    checkpoint: Path | None
    incident: Path | None = None
    gpu: GpuView = GpuView(available=False, reason="no sample yet")
    extras: dict[str, Any] = field(default_factory=dict)
    # Per phase: refused events and artifacts journaled as warnings, and those past the limit dropped.
    input_warnings: dict[str, dict[str, int]] = field(default_factory=dict)
    stop_trigger: str | None = None  # what stopped it last (the incident's trigger)
    stop_addressed: bool = False  # an operator waived a gate or amended the plan since that stop
    amendments: tuple[dict[str, Any], ...] = ()  # every new version of the plan, oldest first
    now: float | None = None  # when the snapshot was taken
    # Taken by the run's own controller for a checkpoint: read later, when that controller may be gone.
    by_controller: bool = False

    @property
    def plan_version(self) -> int:
        """1 for the session file the run started with, one more per amendment."""
        return self.amendments[-1]["version"] if self.amendments else 1

    @property
    def running(self) -> dict[str, Any] | None:
        """The phase running now, its attempt and how long it has run (None between phases)."""
        phase = next((p for p in self.phases if p.state == "running"), None)
        if phase is None:
            return None
        elapsed = None if phase.started_at is None or self.now is None else max(0.0, self.now - phase.started_at)
        return {"phase": phase.id, "attempt": phase.attempts, "elapsed_s": elapsed}

    @property
    def next(self) -> NextStep:
        """What the run needs next (journal/next_step.py)."""
        return next_step(self)

    @property
    def approved_gate_ids(self) -> set[str]:
        """Gates an operator approved (the controller journals an approval as the decision when it next decides)."""
        return {a["gate_id"] for a in self.operator_actions if a.get("action") == "approved"}

    @property
    def waiting_gates(self) -> list[GateView]:
        """Pending gates no operator has approved yet."""
        approved = self.approved_gate_ids
        return [g for g in self.gates if g.status == "pending" and g.gate_id not in approved]

    @property
    def pending_gates(self) -> list[dict[str, Any]]:
        """The gates that wait for an operator, with the commands that decide them."""
        return [{"gate_id": g.gate_id, "phase": g.phase, "summary": g.summary,
                 "approve_command": approve_command(self.run_dir, g.gate_id),
                 "waive_command": waive_command(self.run_dir, g.gate_id)}
                for g in self.waiting_gates]

    @property
    def next_phase(self) -> str | None:
        """The first phase not yet passed."""
        return next((p.id for p in self.phases if p.state != "passed"), None)

    @property
    def resume_command(self) -> str:
        return f"phasegate resume {self.run_dir}"

    def to_json(self) -> dict[str, Any]:
        """The `status --json` document (strict JSON: a NaN or an infinity reads as text)."""
        return clean(self._document(), str, WHOLE)

    def _document(self) -> dict[str, Any]:
        return {
            "schema_version": STATUS_SCHEMA_VERSION,
            "run_id": self.run_id, "session": self.name, "state": self.state, "reason": self.reason,
            "run_dir": str(self.run_dir), "controller_live": self.controller_live,
            "next_phase": self.next_phase, "resume_command": self.resume_command,
            "next_action": self.next.to_json(), "pending_gates": self.pending_gates, "running": self.running,
            "stop_trigger": self.stop_trigger, "plan_version": self.plan_version,
            "amendments": [{k: v for k, v in a.items() if k != "diff"} | {"ts": iso(a["ts"])} for a in self.amendments],
            "phases": [{"id": p.id, "kind": p.kind, "state": p.state, "attempts": p.attempts,
                        "started_at": iso(p.started_at), "ended_at": iso(p.ended_at),
                        "duration_s": p.duration_s, "progress": list(p.progress) if p.progress else None,
                        "error": p.error} for p in self.phases],
            "gates": [asdict(g) for g in self.gates],
            "artifacts": [asdict(a) for a in self.artifacts],
            "metrics": self.metrics,
            "operator_actions": [{**a, "ts": iso(a["ts"])} for a in self.operator_actions],
            "budget": self.budget,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "incident": str(self.incident) if self.incident else None,
            "input_warnings": self.input_warnings,
        }


def _masked(text: str | None, mask: Mask) -> str | None:
    return None if text is None else mask(text)


def _phases(conn: sqlite3.Connection, mask: Mask) -> tuple[PhaseView, ...]:
    rows = conn.execute("SELECT * FROM phases ORDER BY position").fetchall()
    return tuple(
        PhaseView(id=r["id"], kind=r["kind"], state=r["state"], attempts=r["attempts"],
                  started_at=r["started_at"], ended_at=r["ended_at"],
                  progress=(r["progress_done"], r["progress_total"]) if r["progress_total"] else None,
                  progress_step=_masked(r["progress_step"], mask), error=_masked(r["error"], mask))
        for r in rows
    )


def _input_warnings(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Per phase, the warnings journaled about what it sent and how many more were dropped."""
    marks = ", ".join("?" * len(WARNING_KINDS))
    counts: dict[str, dict[str, int]] = {}
    for r in conn.execute(f"SELECT phase, COUNT(*) n FROM events WHERE type IN ({marks}) GROUP BY phase",
                          tuple(map(str, WARNING_KINDS))):
        counts.setdefault(r["phase"], {"warnings": 0, "dropped": 0})["warnings"] = r["n"]
    # Each attempt's drop count is journaled as it grows: its last (largest) value is the count.
    for r in conn.execute("SELECT phase, MAX(CAST(json_extract(data, '$.dropped') AS INTEGER)) n FROM events"
                          " WHERE type = ? GROUP BY phase, json_extract(data, '$.attempt')",
                          (str(EventKind.EVENTS_DROPPED),)):
        counts.setdefault(r["phase"], {"warnings": 0, "dropped": 0})["dropped"] += r["n"] or 0
    return counts


def _waivers(conn: sqlite3.Connection) -> dict[tuple[str, str | None], str]:
    """The note of every waived gate's latest waiver, by (gate, phase); a waiver is kept forever."""
    rows = conn.execute("SELECT gate_id, phase, note FROM operator_actions WHERE action='waived' ORDER BY seq")
    return {(r["gate_id"], r["phase"]): r["note"] for r in rows}


def _waiver(waivers: dict[tuple[str, str | None], str], record: GateRecord) -> str | None:
    """The waiver of this phase's gate, or of the gate by id alone (one that names no phase)."""
    return waivers.get((record.gate_id, record.phase), waivers.get((record.gate_id, None)))


def _gates(conn: sqlite3.Connection, mask: Mask) -> tuple[GateView, ...]:
    # Only waivers apply here: the controller journals an approval as the gate's decision when it acts on it.
    waivers = _waivers(conn)
    rows = conn.execute(
        "SELECT g.* FROM gates g JOIN (SELECT phase, gate_id, MAX(attempt) a FROM gates GROUP BY phase, gate_id) last"
        " ON g.phase = last.phase AND g.gate_id = last.gate_id AND g.attempt = last.a ORDER BY g.decided_at"
    ).fetchall()
    views = []
    for record in map(GateRecord.from_row, rows):
        waiver = _waiver(waivers, record)
        status, note = effective_gate_status(record.status, None if waiver is None else "waived", waiver)
        views.append(GateView(gate_id=record.gate_id, phase=record.phase, attempt=record.attempt,
                              stage=record.stage, kind=record.kind, status=str(status), summary=mask(record.summary),
                              evidence=clean(record.evidence, mask, WHOLE), metrics=clean(record.metrics, mask, WHOLE),
                              waived=_masked(note, mask)))
    return tuple(views)


def _budget(conn: sqlite3.Connection, inputs: dict[str, Any], gpu_name: str | None) -> dict[str, Any]:
    from phasegate.journal.budget import budget_view, ledger_totals, price_for

    spent, hours, per_phase = ledger_totals(conn)
    rate = inputs.get("gpu_hourly_usd")
    if rate is None:
        rate = price_for(inputs.get("gpu")) or price_for(gpu_name)
    return budget_view(spent=spent, billed_hours=hours, allocation=inputs.get("budget_usd"), rate=rate,
                       remaining_hours=inputs.get("remaining_hours"), warn_at=inputs.get("warn_at", 0.8),
                       per_phase=per_phase)


def _gpu(conn: sqlite3.Connection) -> GpuView:
    rows = conn.execute("SELECT * FROM gpu_samples WHERE gpu = 0 ORDER BY ts DESC LIMIT ?", (GPU_HISTORY,)).fetchall()
    if not rows:
        return GpuView(available=False, reason="no sample yet")
    last = rows[0]
    if not last["available"]:
        return GpuView(available=False, reason=last["reason"], name=last["name"])
    peak = conn.execute("SELECT MAX(mem_used_mb) FROM gpu_samples WHERE gpu = 0").fetchone()[0]
    history = tuple(100.0 * r["mem_used_mb"] / r["mem_total_mb"] for r in reversed(rows)
                    if r["available"] and r["mem_used_mb"] is not None and r["mem_total_mb"])
    return GpuView(available=True, name=last["name"], mem_used_mb=last["mem_used_mb"], mem_total_mb=last["mem_total_mb"],
                   util_pct=last["util_pct"], temp_c=last["temp_c"], power_w=last["power_w"],
                   history_mem_pct=history, peak_mem_mb=peak)


def _latest(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern))
    return found[-1] if found else None


def events_of(journal: Journal, kinds: tuple[str, ...], *, through_seq: int) -> list[EventRecord]:
    """Every event of these kinds up to `through_seq`, oldest first: the history a reader needs before it
    follows new events (the TUI's paused intervals and metric curves)."""
    marks = ", ".join("?" * len(kinds))
    rows = journal._conn.execute(  # noqa: SLF001 - the snapshot is the journal package's own reader
        f"SELECT * FROM events WHERE seq <= ? AND type IN ({marks}) ORDER BY seq", (through_seq, *map(str, kinds)))
    return [EventRecord.from_row(r) for r in rows]


def take_snapshot(run_dir: RunDir, journal: Journal, *, spec_budget: dict[str, float | None] | None = None,
                  now: float | None = None) -> RunSnapshot:
    """Read the whole run state in one consistent read transaction; every text in it has its secrets masked."""
    conn = journal._conn  # noqa: SLF001 - the snapshot is the journal package's own reader
    mask = journal.redactor.redact  # the journal masks what it stores; this also covers runs it did not mask
    conn.execute("BEGIN")
    try:
        run = conn.execute("SELECT * FROM run").fetchone()
        phases, gates = _phases(conn, mask), _gates(conn, mask)
        artifacts = tuple(ArtifactView(r["phase"], r["path"], r["sha256"], r["size"])
                          for r in conn.execute("SELECT * FROM artifacts ORDER BY ts, path"))
        metrics: dict[str, dict[str, float]] = {}
        for r in conn.execute("SELECT * FROM metrics ORDER BY ts"):
            metrics.setdefault(r["phase"], {})[mask(r["name"])] = r["value"]
        actions = tuple({**dict(r), "note": mask(r["note"])}
                        for r in conn.execute("SELECT gate_id, action, note, ts FROM operator_actions ORDER BY seq"))
        gpu = _gpu(conn)
        budget = _budget(conn, spec_budget or {}, gpu.name)
        warnings = _input_warnings(conn)
        stop = journal.last_stop() if run["state"] == SessionState.STOPPED else None
        amendments = tuple({**asdict(a)} for a in journal.amendments())
    finally:
        conn.execute("COMMIT")
    return RunSnapshot(
        run_id=run["run_id"], name=run["name"], state=SessionState(run["state"]).value,
        reason=_masked(run["reason"], mask),
        run_dir=run_dir.root.resolve(), session_dir=Path(run["session_dir"]), created_at=run["created_at"],
        updated_at=run["updated_at"], phases=phases, gates=gates, artifacts=artifacts, metrics=metrics,
        operator_actions=actions, budget=budget,
        controller_live=controller_is_live(run_dir),
        checkpoint=run_dir.checkpoint if run_dir.checkpoint.exists() else None,
        incident=_latest(run_dir.incidents, "INCIDENT-*.md"), gpu=gpu, input_warnings=warnings,
        stop_trigger=stop.trigger if stop else None, stop_addressed=bool(stop and stop.addressed),
        amendments=amendments, now=time.time() if now is None else now,
    )
