"""The human form of `phasegate status`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .snapshot import RunSnapshot


def print_status(snapshot: RunSnapshot, console: Console | None = None) -> None:
    """Print phases, gates, budget and what to do next."""
    console = console or Console()
    live = "live controller" if snapshot.controller_live else "no controller running"
    console.print(f"[b]{snapshot.name}[/b] — {snapshot.state.upper()} ({live})  {snapshot.run_dir}")
    if snapshot.reason:
        console.print(f"reason: {snapshot.reason}")
    table = Table("phase", "kind", "state", "attempts", "duration", "progress")
    for phase in snapshot.phases:
        duration = f"{phase.duration_s:.1f}s" if phase.duration_s is not None else ""
        progress = f"{phase.progress[0]}/{phase.progress[1]}" if phase.progress else ""
        table.add_row(phase.id, phase.kind, phase.state, str(phase.attempts), duration, progress)
    console.print(table)
    if snapshot.gates:
        gates = Table("gate", "status", "summary")
        for gate in snapshot.gates:
            gates.add_row(gate.gate_id, gate.status.upper(), gate.summary + (f" (waived: {gate.waived})" if gate.waived else ""))
        console.print(gates)
    budget = snapshot.budget
    if budget.get("spent_usd") is not None:
        console.print(f"budget: ${budget['spent_usd']:.2f} spent, allocation {budget.get('allocation_usd')}")
    if snapshot.incident:
        console.print(f"incident: {snapshot.incident}")
    if snapshot.state != "completed":
        console.print(f"next: {snapshot.next_phase} — {snapshot.resume_command}")
