"""Commands from outside the controller (stop, approve, waive): queued as rows, applied by the controller."""

from __future__ import annotations

import time

from phasegate.floor.errors import InvalidInput
from phasegate.floor.rundir import ControllerLock
from phasegate.journal.records import CommandRecord
from phasegate.journal.store import Journal
from phasegate.session.runs import OpenRun

COMMAND_KINDS = ("stop", "approve", "waive")


def apply_command(journal: Journal, command: CommandRecord) -> str:
    """Apply one queued command to the journal and mark it handled; returns what was done."""
    args, kind = command.args, command.kind
    if kind == "approve":
        journal.record_operator_action(args["gate_id"], "approved", args.get("note") or "")
        result = f"approved {args['gate_id']}"
    elif kind == "waive":
        journal.record_operator_action(args["gate_id"], "waived", args["reason"])
        result = f"waived {args['gate_id']}"
    elif kind == "stop":
        result = "stop requested"
    else:
        result = f"ignored unknown command {kind!r}"
    journal.mark_command_handled(command.id, result)
    return result


def submit(run: OpenRun, kind: str, args: dict, *, wait_s: float = 10.0) -> tuple[str, bool]:
    """Queue a command; with no live controller, apply it here. Returns (result, handled_by_live_controller)."""
    if kind not in COMMAND_KINDS:
        raise InvalidInput(f"unknown command {kind!r}")
    command_id = run.journal.post_command(kind, args)
    lock = ControllerLock(run.run_dir)
    if lock.acquire():  # nobody runs this session now: act as its controller for this one command
        try:
            command = run.journal.command(command_id)
            if command.handled_at is None:
                return apply_command(run.journal, command), False
            return command.result, False
        finally:
            lock.release()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        command = run.journal.command(command_id)
        if command.handled_at is not None:
            return command.result, True
        time.sleep(0.05)
    return "queued; the controller will apply it at its next check", True


def stop_idle_run(run: OpenRun, reason: str, clock=time.time) -> str:
    """Stop a run no controller is executing (paused, or left by a crash): journal it, report it."""
    from phasegate.floor.states import SessionState
    from phasegate.session.reporting import Reporter

    state = run.journal.session_state()
    if state in (SessionState.COMPLETED, SessionState.STOPPED):
        return f"the run is already {state}; nothing to stop"
    run.journal.set_session_state(SessionState.STOPPED, f"operator stop: {reason}")
    reporter = Reporter(run, clock)
    reporter.incident("operator_stop", None, None, {"reason": reason})
    reporter.checkpoint(None)
    return "stopped"
