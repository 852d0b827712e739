"""The explicit state machines of a session and of its phases."""

from __future__ import annotations

import enum

from phasegate.floor.errors import IllegalTransition


class SessionState(enum.StrEnum):
    """Lifecycle of a whole run."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"


class PhaseState(enum.StrEnum):
    """Lifecycle of one phase within a run."""

    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


S, P = SessionState, PhaseState

SESSION_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    S.CREATED: frozenset({S.RUNNING, S.STOPPED, S.FAILED}),
    S.RUNNING: frozenset({S.RUNNING, S.PAUSED, S.COMPLETED, S.STOPPED, S.FAILED}),
    S.PAUSED: frozenset({S.RUNNING, S.STOPPED}),
    # A stopped or failed run can be resumed once its cause is fixed.
    S.STOPPED: frozenset({S.RUNNING}),
    S.FAILED: frozenset({S.RUNNING}),
    S.COMPLETED: frozenset(),
}

PHASE_TRANSITIONS: dict[PhaseState, frozenset[PhaseState]] = {
    P.PENDING: frozenset({P.RUNNING}),
    # running -> pending: a crash interrupted it and resume discards the attempt.
    P.RUNNING: frozenset({P.PASSED, P.FAILED, P.PENDING}),
    P.FAILED: frozenset({P.RUNNING, P.PENDING}),
    P.PASSED: frozenset(),
}

FINISHED_SESSION_STATES = frozenset({S.COMPLETED, S.STOPPED, S.FAILED})


def check_session_transition(current: SessionState, target: SessionState) -> None:
    """Raise IllegalTransition unless a session may go from `current` to `target`."""
    if target not in SESSION_TRANSITIONS[current]:
        raise IllegalTransition(f"session cannot go from {current} to {target}")


def check_phase_transition(phase_id: str, current: PhaseState, target: PhaseState) -> None:
    """Raise IllegalTransition unless a phase may go from `current` to `target`."""
    if target not in PHASE_TRANSITIONS[current]:
        raise IllegalTransition(f"phase {phase_id!r} cannot go from {current} to {target}")


class AttemptState(enum.StrEnum):
    """Lifecycle of one attempt of a phase: the intent is committed before its child is spawned."""

    INTENT = "intent"
    RUNNING = "running"
    EXITED = "exited"  # the child succeeded; its gates have not let the phase pass yet
    PASSED = "passed"
    FAILED = "failed"
    DISCARDED = "discarded"  # interrupted by a controller crash, thrown away on resume


OPEN_ATTEMPT_STATES = frozenset({AttemptState.INTENT, AttemptState.RUNNING})


class Route(enum.StrEnum):
    """Where a session goes after a phase or a reviewer's decision (the journal keeps the values)."""

    ADVANCE = "advance"
    RETRY = "retry"
    PAUSE = "pause"
    STOP = "stop"


class GateStatus(enum.StrEnum):
    """What a gate decided; `waived` is only ever set by an operator."""

    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    PENDING = "pending"
    WAIVED = "waived"


def effective_gate_status(recorded: str, action: str | None,
                          note: str | None = None) -> tuple[GateStatus, str | None]:
    """A gate's status once the operator's word (`approved`/`waived`) is applied, with its note when it counts."""
    status = GateStatus(recorded)
    if action == "waived":  # a waiver is kept forever and covers whatever the gate decided
        return GateStatus.WAIVED, note
    if action == "approved" and status is GateStatus.PENDING:  # an approval only decides a gate that waits
        return GateStatus.PASS, note
    return status, None


class NextAction(enum.StrEnum):
    """What a run needs next, for the person or agent reading its status or checkpoint."""

    RESUME = "resume"  # continue it: `phasegate resume`
    APPROVE = "approve"  # an operator approves (or waives) the gate it waits on
    WAIVE_OR_AMEND = "waive_or_amend"  # a gate failed or the budget ran out: waive the gate or amend the plan
    RETRY = "retry"  # the phase failed: `resume --retry` runs it again, or amend what made it fail
    NEW_RUN = "new_run"  # the run cannot go on (a contaminated base model): start a new one
    NONE = "none"  # nothing: it is complete, or a live controller is running it


class StopCause(enum.StrEnum):
    """How a plain `resume` treats a stopped run, by what stopped it."""

    OUTSIDE = "outside"  # a signal, a full disk, bad input: fixed outside the run, a plain resume continues
    OPERATOR = "operator"  # a person stopped it on purpose: only `resume --force` undoes that
    PHASE = "phase"  # the phase or its gate failed: `--retry`, or a waiver or an amendment since the stop


# The triggers a plain resume continues after, and the ones an operator gave.
OUTSIDE_TRIGGERS = frozenset({"signal", "disk_full", "invalid_input"})
OPERATOR_TRIGGERS = frozenset({"operator_stop"})


def stop_cause(trigger: str | None) -> StopCause:
    """The class of a stop's trigger; a stop without one (an older run's) is treated as from outside."""
    if trigger is None or trigger in OUTSIDE_TRIGGERS:
        return StopCause.OUTSIDE
    return StopCause.OPERATOR if trigger in OPERATOR_TRIGGERS else StopCause.PHASE
