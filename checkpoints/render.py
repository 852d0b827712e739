"""Markdown checkpoints and incident reports, rendered from a run snapshot (no state of their own)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import yaml

from phasegate.floor.redact import Redactor
from phasegate.floor.states import NextAction
from phasegate.journal.sanitize import clean
from phasegate.journal.snapshot import RunSnapshot, iso

# libyaml's emitter where present: the front matter is rewritten at every phase boundary.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Every artifact with its size and sha256 (written beside the checkpoints; front matter and body only count them).
ARTIFACT_LIST = "checkpoints/artifacts.json"
# Front matter is data, never cut: only its secrets are masked (before YAML quoting, which could hide them).
_WHOLE = 10**9


def _front_matter(data: dict[str, Any], redactor: Redactor) -> str:
    masked = clean(data, redactor.redact, _WHOLE)
    return "---\n" + yaml.dump(masked, Dumper=_DUMPER, sort_keys=False, allow_unicode=True) + "---\n"


def _document(front: dict[str, Any], body: list[str], redactor: Redactor | None) -> str:
    """Front matter and body, every secret masked (the renderer's own guard: it may quote any text)."""
    redactor = redactor or Redactor()
    return _front_matter(front, redactor) + "\n" + redactor.redact("\n".join(body))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _phase_table(snapshot: RunSnapshot) -> list[str]:
    lines = ["| # | phase | kind | state | attempts | duration | cost | GPU peak |", "|---|---|---|---|---|---|---|---|"]
    costs = snapshot.budget.get("per_phase_usd") or {}
    for number, phase in enumerate(snapshot.phases, start=1):
        cost = f"${costs[phase.id]:.2f}" if phase.id in costs else "—"
        lines.append(f"| {number} | {phase.id} | {phase.kind} | {phase.state} | {phase.attempts} "
                     f"| {_duration(phase.duration_s)} | {cost} | {_gpu_cell(snapshot.metrics.get(phase.id, {}))} |")
    return lines


CPU_FALLBACK = "on CPU: no usable CUDA"
"""What a phase that reported `cpu_fallback` (device = "auto" without usable CUDA) shows instead of its GPU peak."""


def _gpu_cell(metrics: dict[str, Any]) -> str:
    """A phase's GPU peak, or that its model ran on the CPU for want of CUDA."""
    if metrics.get("cpu_fallback"):
        return CPU_FALLBACK
    peak = metrics.get("gpu_peak_mem_mb")
    return f"{peak:.0f} MiB" if peak else "—"


def _gate_lines(snapshot: RunSnapshot) -> list[str]:
    if not snapshot.gates:
        return ["No gate has been evaluated yet."]
    lines = []
    for gate in snapshot.gates:
        lines.append(f"- **{gate.gate_id}** ({gate.kind}, {gate.stage} `{gate.phase}`, attempt {gate.attempt}): "
                     f"**{gate.status}** — {gate.summary}")
        if gate.waived is not None:
            lines.append(f"  - WAIVED by the operator: {gate.waived}")
        lines += [f"  - {key}: {_short(value)}" for key, value in list(gate.evidence.items())[:MAX_EVIDENCE_KEYS]]
    return lines


MAX_EVIDENCE_KEYS = 6
MAX_EVIDENCE_CHARS = 240


def _short(value: Any) -> str:
    """Evidence in one line, cut to a readable length (the journal keeps it whole)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= MAX_EVIDENCE_CHARS else text[: MAX_EVIDENCE_CHARS - 1] + "…"


def _artifact_lines(snapshot: RunSnapshot) -> list[str]:
    """One short line per artifact: the sha256 of each is in ARTIFACT_LIST (and the journal)."""
    if not snapshot.artifacts:
        return ["None yet."]
    return [*(f"- `{a.path}` ({a.size} bytes) — {a.phase}" for a in snapshot.artifacts), "",
            f"Their sha256: `{ARTIFACT_LIST}`, `phasegate status --json`."]


def _input_warning_lines(snapshot: RunSnapshot) -> list[str]:
    """What phases sent that was refused: a count per phase (the journal holds the warnings themselves)."""
    if not snapshot.input_warnings:
        return []
    lines = ["## Refused phase input", ""]
    for phase, counts in snapshot.input_warnings.items():
        dropped = f"; {counts['dropped']} more dropped, not journaled" if counts.get("dropped") else ""
        lines.append(f"- `{phase}`: {counts.get('warnings', 0)} refused event(s) or artifact(s) journaled as "
                     f"warnings{dropped}")
    return [*lines, ""]


def _next_lines(snapshot: RunSnapshot) -> list[str]:
    step = snapshot.next
    if snapshot.state == "completed":
        return ["The session is complete. Nothing to resume."]
    who = "**A person must decide this** (`requires_human: true`): an agent should not do it on its own." \
        if step.requires_human else "An agent may do this on its own."
    lines = [f"Next action: **{step.action}** — {step.reason}.", "", who, ""]
    if snapshot.next_phase:
        lines += [f"Next phase: **{snapshot.next_phase}**.", ""]
    if step.commands:
        lines += ["```", *step.commands, "```"]
    if snapshot.incident:
        lines += ["", f"Read the incident report first: `{snapshot.incident}`."]
    return lines


def _amendment_lines(snapshot: RunSnapshot) -> list[str]:
    """Every version of the plan since the session file the run started with."""
    if not snapshot.amendments:
        return []
    lines = ["## Plan amendments", ""]
    for a in snapshot.amendments:
        changes = f" ({'; '.join(a['changes'])})" if a.get("changes") else ""
        lines.append(f"- v{a['version']} `{a['path']}` at {iso(a['ts'])}: {a['reason']}{changes}")
    return [*lines, ""]


def checkpoint_front_matter(snapshot: RunSnapshot) -> dict[str, Any]:
    """The machine-readable header an agent reads to know where the run stands (short: it is read at every
    context reset; the full artifact list with hashes is in ARTIFACT_LIST and the journal)."""
    step = snapshot.next
    return {
        "run_id": snapshot.run_id,
        "session": snapshot.name,
        "state": snapshot.state,
        "reason": snapshot.reason,
        "next_action": str(step.action),
        "requires_human": step.requires_human,
        "next_reason": step.reason,
        "commands": list(step.commands),
        "next_phase": snapshot.next_phase,
        "running": snapshot.running,
        "stop_trigger": snapshot.stop_trigger,
        "resume_command": step.commands[0] if step.action is NextAction.RESUME and step.commands else None,
        "run_dir": str(snapshot.run_dir),
        "session_dir": str(snapshot.session_dir),
        "plan_version": snapshot.plan_version,
        "budget_spent_usd": snapshot.budget.get("spent_usd"),
        "budget_left_usd": snapshot.budget.get("left_usd"),
        "incident": str(snapshot.incident) if snapshot.incident else None,
        "pending_gates": snapshot.pending_gates,
        "written_at": iso(snapshot.updated_at),
        # What `phasegate recover` needs if the journal is ever lost: what was done; the hashes are in the list.
        "completed_phases": [p.id for p in snapshot.phases if p.state == "passed"],
        "artifacts": {"count": len(snapshot.artifacts), "total_bytes": sum(a.size for a in snapshot.artifacts),
                      "list": ARTIFACT_LIST},
    }


def artifact_list(snapshot: RunSnapshot) -> str:
    """ARTIFACT_LIST: every recorded artifact with its phase, size and sha256 (JSON)."""
    return json.dumps([{"phase": a.phase, "path": a.path, "size": a.size, "sha256": a.sha256}
                       for a in snapshot.artifacts], indent=1) + "\n"


def render_checkpoint(snapshot: RunSnapshot, redactor: Redactor | None = None) -> str:
    """CHECKPOINT.md: front matter for machines, then a body a person or an agent can act on."""
    body = [
        f"# Checkpoint — {snapshot.name} ({snapshot.state})", "",
        f"Run `{snapshot.run_id}` in `{snapshot.run_dir}`."
        + (f" Reason: {snapshot.reason}." if snapshot.reason else ""), "",
        "## Phases", "", *_phase_table(snapshot), "",
        "## Gates", "", *_gate_lines(snapshot), "",
        "## Artifacts", "", *_artifact_lines(snapshot), "",
        *_input_warning_lines(snapshot),
        *_amendment_lines(snapshot),
        "## Budget", "", budget_line(snapshot.budget), "",
        "## GPU", "", *_gpu_lines(snapshot), "",
        "## What is next", "", *_next_lines(snapshot), "",
    ]
    return _document(checkpoint_front_matter(snapshot), body, redactor)


def budget_line(budget: dict[str, Any]) -> str:
    """Spent, allocation, left, billed hours, burn rate, projection and the warning, in one markdown sentence."""
    if budget.get("gpu_hourly_usd") is None and not budget.get("spent_usd"):
        return "No GPU rate known (`gpu_hourly_usd`, `gpu`); GPU time is not billed."
    allocation = budget.get("allocation_usd")
    tail = f" of ${allocation:.2f} (${budget['left_usd']:.2f} left)" if allocation is not None else ""
    line = f"Spent ${budget['spent_usd']:.2f}{tail} over {budget['wall_hours']:.2f} billed GPU hours"
    if budget.get("burn_rate_usd_h") is not None:
        line += f", burning ${budget['burn_rate_usd_h']:.2f}/h"
    if budget.get("projected_total_usd") is not None:
        line += f"; projected total ${budget['projected_total_usd']:.2f}"
    return line + "." + (" **Over the warning line.**" if budget.get("warning") else "")


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: tuple[float, ...] | list[float], top: float = 100.0) -> str:
    """A text sparkline of percentages (monochrome-safe: height carries the meaning)."""
    return "".join(SPARK[min(len(SPARK) - 1, max(0, int(v / top * (len(SPARK) - 1) + 0.5)))] for v in values)


def _gpu_lines(snapshot: RunSnapshot) -> list[str]:
    gpu = snapshot.gpu
    if not gpu.available:
        return [f"GPU: not available ({gpu.reason})."]
    lines = [f"{gpu.name}: {gpu.mem_used_mb:.0f} / {gpu.mem_total_mb:.0f} MiB at the stop, "
             f"peak {gpu.peak_mem_mb:.0f} MiB." if gpu.mem_used_mb is not None else f"{gpu.name}: no memory reading."]
    if gpu.history_mem_pct:
        lines.append(f"Memory, last {len(gpu.history_mem_pct)} samples (0–100 %): `{sparkline(gpu.history_mem_pct)}`")
    return lines


def _recovery_lines(snapshot: RunSnapshot) -> list[str]:
    """The way back: read, check, then the next action's exact commands."""
    step = snapshot.next
    who = " A person must decide this; an agent should not." if step.requires_human else ""
    return ["1. Read the evidence and the log above; fix the cause (data, script, threshold, hardware).",
            f"2. Check the run: `phasegate status {snapshot.run_dir}`",
            f"3. Next action: **{step.action}** — {step.reason}.{who} Completed phases are not run again:",
            *(f"   - `{command}`" for command in step.commands)]


def render_incident(snapshot: RunSnapshot, *, trigger: str, phase: str | None, attempt: int | None,
                    evidence: dict[str, Any], log_tail: list[str], now: float,
                    timeline: list[str] | None = None, redactor: Redactor | None = None) -> str:
    """INCIDENT-<stamp>.md: what stopped the run, the evidence, and the exact way back."""
    redactor = redactor or Redactor()
    evidence = clean(evidence, redactor.redact, _WHOLE)  # masked before `_short` cuts a value (and a secret) short
    front = {"run_id": snapshot.run_id, "trigger": trigger, "phase": phase, "attempt": attempt,
             "state": snapshot.state, "next_action": str(snapshot.next.action),
             "requires_human": snapshot.next.requires_human, "commands": list(snapshot.next.commands),
             "written_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")}
    evidence_lines = [f"- {key}: {_short(value)}" for key, value in evidence.items()] or ["- (none recorded)"]
    paused = snapshot.state == "paused"
    what = "paused, waiting for an operator," if paused else "stopped"
    body = [
        f"# Incident — {snapshot.name}: {trigger}", "",
        f"The session {what} during phase `{phase}` (attempt {attempt})." if phase else f"The session {what}.", "",
        "## Evidence", "", *evidence_lines, "",
        "## Timeline", "", *(timeline or ["(no events)"]), "",
        "## Phases at the stop", "", *_phase_table(snapshot), "",
        "## GPU memory", "", *_gpu_lines(snapshot), "",
        "## Last lines of the phase log", "", "```", *(log_tail or ["(empty)"]), "```", "",
        "## Artifacts kept", "", *_artifact_lines(snapshot), "",
        *_input_warning_lines(snapshot),
        "## Budget at the stop", "", budget_line(snapshot.budget), "",
        "## Recovery", "", *_recovery_lines(snapshot), "",
    ]
    return _document(front, body, redactor)
