"""What a run needs next, decided once from its snapshot: status, every checkpoint and `resume` all use it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from phasegate.floor.states import NextAction, StopCause, stop_cause

# The snapshot module builds on this one: a run's snapshot (journal/snapshot.py RunSnapshot) is passed in.
RunSnapshot = Any

# Triggers after which the run cannot go on: its base model failed the contamination check, and a plan
# may not change the model of phases that already ran.
NEW_RUN_TRIGGERS = frozenset({"contamination"})
# Triggers where the plan, not the phase, is what to change: a gate's verdict, the money left.
WAIVE_OR_AMEND_TRIGGERS = frozenset({"gate_failed", "reviewer_stop", "policy_recheck_failed", "budget_exhausted"})


@dataclass(frozen=True)
class NextStep:
    """The next action, whether only a person should take it, why, and the exact commands."""

    action: NextAction
    requires_human: bool
    reason: str
    commands: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "action": str(self.action), "commands": list(self.commands)}


def next_step(snapshot: RunSnapshot) -> NextStep:
    """The next action for a run in any state (see NextAction)."""
    run = snapshot.run_dir
    if snapshot.state == "completed":
        return NextStep(NextAction.NONE, False, "the session is complete", ())
    if snapshot.state == "paused":  # a live controller may wait on it too (a `[pod]` table): it goes on at once
        return _paused(snapshot, run)
    if snapshot.controller_live:
        return NextStep(NextAction.NONE, False, "a live controller is running it; watch it",
                        (f"phasegate watch {run}", f"phasegate status {run}"))
    if snapshot.state == "stopped":
        return _stopped(snapshot, run)
    if snapshot.state == "running" and snapshot.by_controller:
        return NextStep(NextAction.RESUME, False, "a controller was running it when this was written; if "
                        "`phasegate status` shows no live controller now, resume continues from the last completed "
                        "work", (f"phasegate status {run}", f"phasegate resume {run}"))
    if snapshot.state == "running":
        return NextStep(NextAction.RESUME, False, "its controller is gone (a crash, a kill or a lost pod); resume "
                        "continues from the last completed work", (f"phasegate resume {run}",))
    if snapshot.state == "failed":
        return NextStep(NextAction.RESUME, False, f"phasegate stopped on an internal error ({snapshot.reason}); "
                        "resume continues once it is fixed", (f"phasegate resume {run}",))
    return NextStep(NextAction.RESUME, False, "the run has not started", (f"phasegate resume {run}",))


def _paused(snapshot: RunSnapshot, run: Path) -> NextStep:
    pending = snapshot.waiting_gates
    if not pending and snapshot.controller_live:  # a controller waiting on the pause acts on the decision itself
        return NextStep(NextAction.NONE, False, "the gate it waited on is decided; its live controller goes on",
                        (f"phasegate watch {run}",))
    if not pending:  # approved (or waived) while paused: the controller acts on it when resumed
        return NextStep(NextAction.RESUME, False, "the gate it waited on is decided", (f"phasegate resume {run}",))
    commands = [c for g in pending for c in (approve_command(run, g.gate_id), waive_command(run, g.gate_id))]
    then = () if snapshot.controller_live else (f"phasegate resume {run}",)  # a waiting controller goes on itself
    return NextStep(NextAction.APPROVE, True, f"gate {pending[0].gate_id} waits for an operator: {pending[0].summary}",
                    (*commands, *then))


def _stopped(snapshot: RunSnapshot, run: Path) -> NextStep:
    trigger, reason = snapshot.stop_trigger, snapshot.reason or "stopped"
    cause = stop_cause(trigger)
    if cause is StopCause.OUTSIDE or snapshot.stop_addressed:
        why = "an operator acted on the stop since (a waiver or an amendment)" if snapshot.stop_addressed else reason
        return NextStep(NextAction.RESUME, False, why, (f"phasegate resume {run}",))
    if cause is StopCause.OPERATOR:
        return NextStep(NextAction.RESUME, True, f"an operator stopped it on purpose ({reason}); only a person "
                        "resumes it", (f"phasegate resume {run} --force",))
    if trigger in NEW_RUN_TRIGGERS:
        return NextStep(NextAction.NEW_RUN, True, f"{reason}; the plan cannot change what already ran: fix the "
                        "cause and start a new run", ("phasegate run SESSION",))
    if trigger in WAIVE_OR_AMEND_TRIGGERS:
        return NextStep(NextAction.WAIVE_OR_AMEND, True, reason, _waive_or_amend(snapshot, run, trigger))
    return NextStep(NextAction.RETRY, False, f"{reason}; fix the cause, then retry the phase (or amend the plan)",
                    (f"phasegate resume {run} --retry", f"phasegate amend {run} --session NEW.toml --reason TEXT"))


def _waive_or_amend(snapshot: RunSnapshot, run: Path, trigger: str | None) -> tuple[str, ...]:
    if trigger == "budget_exhausted":
        spent = snapshot.budget.get("spent_usd") or 0.0
        return (f"phasegate amend {run} --set session.budget_usd={max(1, round(spent * 1.5))} --reason TEXT",
                f"phasegate resume {run}")
    failed = [g for g in snapshot.gates if g.status == "fail" and g.phase == snapshot.next_phase]
    waives = [waive_command(run, g.gate_id) for g in failed[-1:]]
    return (*waives, f"phasegate amend {run} --session NEW.toml --reason TEXT", f"phasegate resume {run}",
            f"phasegate resume {run} --retry")


def approve_command(run: Path, gate_id: str) -> str:
    return f"phasegate approve {run} {gate_id} --note TEXT"


def waive_command(run: Path, gate_id: str) -> str:
    return f"phasegate waive {run} {gate_id} --reason TEXT"
