"""The human form of `phasegate status`: phases, gates, budget, the plan and what to do next."""

from __future__ import annotations


def print_status(snapshot, console=None) -> None:
    """Print phases, gates, budget and what to do next (the human form of `status`)."""
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.table import Table

    from phasegate.checkpoints.render import budget_line

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
    # The checkpoint's own sentence: spent, allocation, left, burn rate, projection, warning.
    console.print(Markdown(f"budget: {budget_line(snapshot.budget)}", justify="default"))
    if snapshot.plan_version > 1:
        last = snapshot.amendments[-1]
        console.print(f"plan: v{snapshot.plan_version} ({last['path']}: {last['reason']})", markup=False)
    if snapshot.incident:
        console.print(f"incident: {snapshot.incident}")
    step = snapshot.next
    who = " — a person must decide this" if step.requires_human else ""
    console.print(f"next action: {step.action}{who}: {step.reason}", markup=False)
    for command in step.commands:
        console.print(f"  {command}", markup=False)
