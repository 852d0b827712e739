"""Evaluating a phase's gates: journal every result, reuse decided ones, apply operator approvals and waivers."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from phasegate.floor.rundir import RunDir
from phasegate.floor.states import Route, effective_gate_status
from phasegate.gates.base import Gate, GateContext, GateResult, GateStatus
from phasegate.journal.records import GateRecord, ReviewRecord
from phasegate.journal.store import Journal
from phasegate.session.spec import GateSpec, PhaseSpec

OK_STATUSES = {GateStatus.PASS, GateStatus.WARN, GateStatus.WAIVED}


@dataclass(frozen=True)
class DeclaredGate:
    """A gate of the session file with its resolved id and stage (pre or post)."""

    gate_id: str
    phase_id: str
    stage: str
    spec: GateSpec
    rechecks: str | None = None  # for a re-check: the id of the earlier gate it runs again

    @property
    def gate(self) -> Gate:
        """The gate with its parsed options: it says what it needs (history, re-checks, ...) and evaluates."""
        return self.spec.gate


@dataclass
class StageOutcome:
    """What the gates of one stage decided together."""

    failed: list[tuple[str, str]] = field(default_factory=list)
    pending: list[tuple[str, str]] = field(default_factory=list)
    # Pending because the gate itself broke (a reviewer that hung or printed garbage), decided just now.
    errors: list[tuple[str, str]] = field(default_factory=list)
    route: Route | None = None  # of the failed gate: RETRY or STOP when a reviewer decided
    changes: dict = field(default_factory=dict)
    failed_gate: DeclaredGate | None = None  # the gate that failed, when one did

    @property
    def passed(self) -> bool:
        return not self.failed and not self.pending

    @property
    def recheck_failed(self) -> bool:
        """Whether the failure is a re-check of an earlier phase's gate (the code changed mid-session)."""
        return self.failed_gate is not None and self.failed_gate.rechecks is not None


def declared_gates(phase: PhaseSpec, stage: str) -> list[DeclaredGate]:
    """The gates of one stage with ids: explicit, else `<phase>.<kind>` (numbered when repeated)."""
    specs = phase.pre_gates if stage == "pre" else phase.gates
    # Reviews come after the hard gates of the same stage: a reviewer never sees, or overrides, a failed one.
    specs = sorted(specs, key=lambda spec: spec.gate.runs_after_hard_gates)
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        base = f"{phase.id}.{spec.kind}" if stage == "post" else f"{phase.id}.pre.{spec.kind}"
        seen[base] = seen.get(base, 0) + 1
        gate_id = spec.id or (base if seen[base] == 1 else f"{base}-{seen[base]}")
        out.append(DeclaredGate(gate_id, phase.id, stage, spec))
    return out


def recheck_gates(phases: list[PhaseSpec], phase: PhaseSpec) -> list[DeclaredGate]:
    """Gates of earlier phases marked `recheck = "every_phase"`, re-run before `phase` as `<gate>@<phase>`."""
    earlier = phases[: phases.index(phase)]
    return [DeclaredGate(f"{gate.gate_id}@{phase.id}", phase.id, "pre", gate.spec, rechecks=gate.gate_id)
            for p in earlier for stage in ("pre", "post") for gate in declared_gates(p, stage)
            if gate.gate.rechecks_every_phase]


def gate_phases(phases: list[PhaseSpec]) -> dict[str, str]:
    """Every gate id a session declares, in order, with the ids of policy re-checks: the phase each gates."""
    # One pass (the re-checks of each phase are those of the phases before it): linear in a long session.
    declared, rechecks, rechecked = {}, {}, []
    for phase in phases:
        rechecks.update({f"{gate_id}@{phase.id}": phase.id for gate_id in rechecked})
        for stage in ("pre", "post"):
            for gate in declared_gates(phase, stage):
                declared[gate.gate_id] = phase.id
                if gate.gate.rechecks_every_phase:
                    rechecked.append(gate.gate_id)
    return {**declared, **rechecks}


def all_gate_ids(phases: list[PhaseSpec]) -> list[str]:
    """Every gate id a session declares, in order, with the ids of policy re-checks."""
    return list(gate_phases(phases))


def _evaluate(gate: DeclaredGate, context: GateContext) -> GateResult:
    """Run one gate kind; an exception inside a gate is a failed gate, never a crash of the session."""
    try:
        return gate.gate.evaluate(context)
    except Exception as exc:  # noqa: BLE001 - a gate's bug must fail closed, with the error as evidence
        return GateResult(GateStatus.FAIL, f"gate raised {type(exc).__name__}: {exc}", {"error": repr(exc)})


def _reusable(row: GateRecord | None, gate: DeclaredGate) -> bool:
    """A decision kept from before a restart: passes always; failures only for costly kinds (reviews)."""
    if row is None:
        return False
    return row.status in ("pass", "warn") or (gate.gate.costly and row.status in ("fail", "pending"))


def _operator_override(journal: Journal, gate: DeclaredGate, status: GateStatus) -> tuple[GateStatus, str | None]:
    """Apply the operator's latest word on this phase's gate: (effective status, the operator's note)."""
    action = journal.operator_action(gate.gate_id, gate.phase_id)
    if action is None:
        return status, None
    return effective_gate_status(status, action.action, action.note)


ContextFactory = Callable[[DeclaredGate, int], GateContext]


@dataclass(frozen=True)
class JournalReviewLog:
    """A review gate's calls for one phase attempt, kept in the journal (the cost goes to the ledger with the answer)."""

    journal: Journal
    phase: str
    gate_id: str
    attempt: int

    def recorded(self) -> ReviewRecord | None:
        """The journal's record of this call, if it was asked."""
        return self.journal.review(self.phase, self.gate_id, self.attempt)

    def asked(self) -> None:
        """Commit the call before the reviewer starts."""
        self.journal.review_asked(self.phase, self.gate_id, self.attempt)

    def answered(self, answer: Mapping[str, Any], audit: Mapping[str, str], cost_usd: float | None) -> None:
        """Commit the answer, its audit sha256 and its cost together."""
        self.journal.review_answered(self.phase, self.gate_id, self.attempt, answer=dict(answer), audit=dict(audit),
                                     cost_usd=cost_usd)

    def artifacts(self) -> Mapping[str, str]:
        """The journaled sha256 of the phase's artifacts."""
        return self.journal.artifact_digests(self.phase)


def _approved(note: str | None, summary: str) -> str:
    return f"approved by the operator{': ' + note if note else ''} ({summary})"


def _reused(journal: Journal, gate: DeclaredGate, row: GateRecord, on_decided: Callable[[], None]) -> tuple[GateStatus, str, dict, bool]:
    """A decision kept from before; a pending one the operator approved since is journaled as passed,
    so that every reader (status, checkpoints, a later phase vetting its inputs) sees the approval."""
    status, summary, evidence = GateStatus(row.status), row.summary, row.evidence
    effective, note = _operator_override(journal, gate, status)
    if status == GateStatus.PENDING and effective == GateStatus.PASS:
        status, summary = effective, _approved(note, summary)
        journal.record_gate(gate_id=gate.gate_id, phase=gate.phase_id, attempt=row.attempt, stage=gate.stage,
                            kind=gate.spec.kind, status=str(status), summary=summary, evidence=evidence,
                            metrics=row.metrics)
        on_decided()
    return status, summary, evidence, False


def _decide(journal: Journal, gate: DeclaredGate, attempt: int, make_context: ContextFactory,
            on_decided: Callable[[], None]) -> tuple[GateStatus, str, dict, bool]:
    """One gate's decision for an attempt (status, summary, evidence, decided now): reused when already
    decided, else evaluated and journaled."""
    row = journal.gate_decision(gate.gate_id, attempt, phase=gate.phase_id)
    if _reusable(row, gate):
        return _reused(journal, gate, row, on_decided)
    context = replace(make_context(gate, attempt), review_log=JournalReviewLog(journal, gate.phase_id, gate.gate_id, attempt))
    result = _evaluate(gate, context)
    status, summary = result.status, result.summary
    effective, note = _operator_override(journal, gate, status)
    if effective == GateStatus.PASS and status == GateStatus.PENDING:  # journal the approval as the decision
        status, summary = effective, _approved(note, summary)
    evidence = json.loads(json.dumps(dict(result.evidence), default=str))
    if result.route:
        evidence.update(route=result.route, changes=dict(result.changes))
    journal.record_gate(gate_id=gate.gate_id, phase=gate.phase_id, attempt=attempt, stage=gate.stage,
                        kind=gate.spec.kind, status=str(status), summary=summary, evidence=evidence,
                        metrics=dict(result.metrics))
    on_decided()
    return status, summary, evidence, True


def evaluate_stage(journal: Journal, gates: list[DeclaredGate], attempt: int, make_context: ContextFactory,
                   on_decided: Callable[[], None] = lambda: None) -> StageOutcome:
    """Evaluate gates in order and journal each; after a failure only advice-only reviews still run."""
    outcome = StageOutcome()
    for gate in gates:
        if outcome.failed and not gate.gate.advises_on_failure:
            continue
        status, summary, evidence, fresh = _decide(journal, gate, attempt, make_context, on_decided)
        if outcome.failed:  # advice on a failure is recorded, never acted on
            continue
        status, _ = _operator_override(journal, gate, status)
        if status == GateStatus.FAIL:
            outcome.failed.append((gate.gate_id, summary))
            outcome.failed_gate = gate
            route = evidence.get("route")  # a Route when decided now, its text when read back from the journal
            outcome.route, outcome.changes = Route(route) if route else None, dict(evidence.get("changes") or {})
        elif status == GateStatus.PENDING:
            outcome.pending.append((gate.gate_id, summary))
            if fresh and evidence.get("error"):
                outcome.errors.append((gate.gate_id, str(evidence["error"])))
    return outcome


def gate_context(gate: DeclaredGate, attempt: int, *, session_dir: Path, run_dir: Path, **services) -> GateContext:
    """The context a gate evaluates in (`services`: reviewers, tunable, history for review gates)."""
    return GateContext(gate_id=gate.gate_id, phase_id=gate.phase_id, options=gate.spec.options,
                       session_dir=session_dir, run_dir=run_dir,
                       artifacts_dir=RunDir(run_dir).artifacts(gate.phase_id), attempt=attempt, **services)
