"""Commands from outside the controller (stop, approve, waive): queued as rows, applied by the controller."""

from __future__ import annotations

import os
import time

from phasegate.floor.errors import InvalidInput
from phasegate.floor.rundir import ControllerLock
from phasegate.journal.records import CommandRecord
from phasegate.session.gating import gate_phases
from phasegate.session.runs import OpenRun

COMMAND_KINDS = ("stop", "approve", "waive", "amend")


def apply_command(run: OpenRun, command: CommandRecord, clock=time.time) -> str:
    """Apply one queued command to the journal and mark it handled; returns what was done. An approval, a
    waiver or an amendment is a state change: the checkpoint says so at once."""
    journal, args, kind = run.journal, command.args, command.kind
    if kind == "amend":
        result = _amend(run, args)
    elif kind == "approve":
        journal.record_operator_action(args["gate_id"], "approved", args.get("note") or "", phase=args.get("phase"))
        result = f"approved {args['gate_id']}"
    elif kind == "waive":
        journal.record_operator_action(args["gate_id"], "waived", args["reason"], phase=args.get("phase"))
        result = f"waived {args['gate_id']}"
    elif kind == "stop":
        result = "stop requested"
    else:
        result = f"ignored unknown command {kind!r}"
    journal.mark_command_handled(command.id, result)
    if kind in ("approve", "waive", "amend"):
        from phasegate.session.reporting import Reporter

        Reporter(run, clock).checkpoint(journal.running_phase(), numbered=False)
    return result


def _amend(run: OpenRun, args: dict) -> str:
    """Adopt an amended plan, checked again against the run as it stands now."""
    from phasegate.session.amend import adopt, from_text

    try:
        proposal = from_text(run, args["text"], args["reason"])
        if proposal.version != args.get("version", proposal.version):
            raise InvalidInput("the plan was amended by someone else meanwhile; amend again from the new version")
        path = adopt(run, proposal)
    except InvalidInput as exc:
        return f"refused: {exc}"
    return f"amended: plan v{proposal.version} ({path.name})"


def submit(run: OpenRun, kind: str, args: dict, *, wait_s: float = 10.0, clock=time.time) -> tuple[str, bool]:
    """Queue a command; with no live controller, apply it here. Returns (result, handled_by_live_controller)."""
    if kind not in COMMAND_KINDS:
        raise InvalidInput(f"unknown command {kind!r}")
    if "gate_id" in args:  # an approval or a waiver is for the gate of one phase, never another's
        args = {**args, "phase": gate_phases(run.loaded.spec.phases).get(args["gate_id"])}
    command_id = run.journal.post_command(kind, args)
    deadline = time.monotonic() + wait_s
    while True:
        # The lock is tried again each time: a controller that ends without reading the command leaves it to us.
        if (done := _apply_without_controller(run, command_id, clock)) is not None:
            return done
        command = run.journal.command(command_id)
        if command.handled_at is not None:
            return command.result, True
        if time.monotonic() >= deadline:
            return "queued; the controller will apply it at its next check", True
        time.sleep(0.05)


def _apply_without_controller(run: OpenRun, command_id: int, clock) -> tuple[str, bool] | None:
    """Holding the controller lock, act as the run's controller for this one command; None while one is live."""
    lock = ControllerLock(run.run_dir)
    if not lock.acquire():
        return None
    try:
        command = run.journal.command(command_id)
        if command.handled_at is not None:  # a controller applied it before it ended
            return command.result, True
        if command.kind == "stop":
            return _stop_here(run, command, clock), False
        return apply_command(run, command, clock), False
    finally:
        lock.release()


def _stop_here(run: OpenRun, command: CommandRecord, clock) -> str:
    """Stop a run no controller executes (paused, or left by a crash): end its leftovers, journal it, report it."""
    from phasegate.floor.states import SessionState
    from phasegate.session.reporting import Reporter
    from phasegate.session.runner import end_leftovers

    reason = command.args.get("reason") or "no reason given"
    end_leftovers(run.run_dir.root, run.journal.open_attempts())
    state = run.journal.session_state()
    if state in (SessionState.COMPLETED, SessionState.STOPPED):
        result = f"the run is already {state}; nothing to stop"
    else:
        from phasegate.session.notify import telling

        with telling(run, os.environ):  # no controller will tell the `[[notify]]` tables: this process does
            run.journal.set_session_state(SessionState.STOPPED, f"operator stop: {reason}", "operator_stop")
            reporter = Reporter(run, clock)
            reporter.incident("operator_stop", None, None, {"reason": reason})
            reporter.checkpoint(None)
        result = "stopped"
    # Older stops still queued are answered by this one: a later resume must not stop again on them.
    for pending in run.journal.pending_commands():
        if pending.kind == "stop":
            run.journal.mark_command_handled(pending.id, result)
    return result


def stop_idle_run(run: OpenRun, reason: str, clock=time.time) -> str:
    """Stop a run: here, under the controller lock, when no controller runs it; else through its live controller."""
    return submit(run, "stop", {"reason": reason}, clock=clock)[0]
