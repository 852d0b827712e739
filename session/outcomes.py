"""Where a phase's attempt leaves the session, for the endings that stop it early: each journals the attempt's
end and says why the session stops, with the evidence its incident report shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phasegate.floor.errors import ExitCode, InvalidInput
from phasegate.floor.events import EARLY_STOP_EXIT, StopEvent
from phasegate.floor.rundir import RunDir
from phasegate.floor.states import Route
from phasegate.journal.store import Journal
from phasegate.session.runner import ChildExit, Trigger
from phasegate.session.spec import BUILTIN_PHASE_KINDS, PhaseSpec

INVALID_INPUT_TRIGGER = "invalid_input"
_LOG_TAIL_BYTES = 65536  # how much of a phase's log end is searched for its error line


@dataclass(frozen=True)
class PhaseOutcome:
    route: Route
    reason: str | None = None
    trigger: str | None = None
    attempt: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def raise_if_invalid_input(self) -> None:
        """A stop for invalid input ends the command with exit 2 and the phase's own message, once it is journaled."""
        if self.trigger == INVALID_INPUT_TRIGGER:
            raise InvalidInput(self.reason or "invalid input")


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


def invalid_input(journal: Journal, phase: PhaseSpec, attempt: int, exit: ChildExit,
                  run_dir: RunDir) -> PhaseOutcome | None:
    """A built-in phase that exited with the invalid-input code (a missing model, unusable CUDA in a GPU session):
    stop without retrying, since no retry changes its inputs or this machine; its `error: ...` line is the reason.
    None for any other ending."""
    if phase.kind not in BUILTIN_PHASE_KINDS or exit.exit_code != ExitCode.INVALID_INPUT:
        return None
    message = _last_error_line(run_dir.log(phase.id)) or f"phase {phase.id} exited {int(ExitCode.INVALID_INPUT)} (invalid input)"
    journal.finish_attempt(phase.id, attempt, passed=False, exit_code=ExitCode.INVALID_INPUT,
                           reason=f"invalid input: {message}")
    return PhaseOutcome(Route.STOP, f"phase {phase.id}: {message}", INVALID_INPUT_TRIGGER, attempt,
                        {"exit_code": int(ExitCode.INVALID_INPUT), "message": message})


def _last_error_line(log: Path) -> str | None:
    """The last `error: ...` line a built-in phase printed (pipeline/__main__.py), without its prefix."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - _LOG_TAIL_BYTES))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    errors = [line.strip()[len("error: "):] for line in tail.splitlines() if line.strip().startswith("error: ")]
    return errors[-1] if errors else None
