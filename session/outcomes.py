"""Where a phase's attempt leaves the session, for the endings that stop it early: each journals the attempt's
end and says why the session stops, with the evidence its incident report shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phasegate.floor.events import EARLY_STOP_EXIT, StopEvent
from phasegate.floor.states import Route
from phasegate.journal.store import Journal
from phasegate.session.runner import ChildExit, Trigger
from phasegate.session.spec import PhaseSpec


@dataclass(frozen=True)
class PhaseOutcome:
    route: Route
    reason: str | None = None
    trigger: str | None = None
    attempt: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


def early_stop(journal: Journal, phase: PhaseSpec, attempt: int, request: StopEvent | None) -> PhaseOutcome:
    """The phase asked to stop the session (contamination, say): no retry, its evidence in the incident."""
    request = request or StopEvent()  # an exit code without a stop event: still a stop
    trigger = request.trigger or "early_stop"
    summary = request.summary or f"phase {phase.id} exited with {int(EARLY_STOP_EXIT)} (early stop)"
    journal.finish_attempt(phase.id, attempt, passed=False, exit_code=EARLY_STOP_EXIT,
                           reason=f"early stop ({trigger}): {summary}")
    return PhaseOutcome(Route.STOP, f"early stop ({trigger}) in {phase.id}: {summary}", trigger, attempt,
                        dict(request.evidence))


def out_of_memory(journal: Journal, phase: PhaseSpec, attempt: int, exit: ChildExit, line: str) -> PhaseOutcome:
    """A CUDA OOM in the phase's output: stop early (a retry would hit the same wall)."""
    reason = f"oom: CUDA out of memory in {phase.id} (exit code {exit.exit_code})"
    journal.finish_attempt(phase.id, attempt, passed=False, exit_code=exit.exit_code, reason=reason)
    return PhaseOutcome(Route.STOP, reason, "oom", attempt, {"log_line": line, "exit_code": exit.exit_code})


def interrupted(journal: Journal, phase: PhaseSpec, attempt: int, exit: ChildExit,
                evidence: dict[str, Any]) -> PhaseOutcome:
    """Phasegate ended the child (timeout, operator stop, watchdog): stop with its trigger."""
    stop = exit.interruption
    journal.finish_attempt(phase.id, attempt, passed=False, exit_code=exit.exit_code, reason=stop.reason)
    reason = stop.reason
    if stop.trigger is Trigger.TIMEOUT:
        reason = f"phase {phase.id} timed out after {phase.timeout_s} s"
    return PhaseOutcome(Route.STOP, reason, str(stop.trigger), attempt, dict(evidence))
