"""Commands from outside the controller (stop, approve, waive): queued as rows, applied by the controller."""

from __future__ import annotations

import json
import sqlite3
import time

from .errors import InvalidInput
from .journal import Journal
from .rundir import ControllerLock
from .runs import OpenRun

COMMAND_KINDS = ("stop", "approve", "waive")


def apply_command(journal: Journal, command: sqlite3.Row) -> str:
    """Apply one queued command to the journal and mark it handled; returns what was done."""
    args = json.loads(command["args"])
    kind = command["kind"]
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
    journal.mark_command_handled(command["id"], result)
    return result


def submit(run: OpenRun, kind: str, args: dict, *, wait_s: float = 10.0) -> tuple[str, bool]:
    """Queue a command; with no live controller, apply it here. Returns (result, handled_by_live_controller)."""
    if kind not in COMMAND_KINDS:
        raise InvalidInput(f"unknown command {kind!r}")
    command_id = run.journal.post_command(kind, args)
    lock = ControllerLock(run.run_dir)
    if lock.acquire():  # nobody runs this session now: act as its controller for this one command
        try:
            row = run.journal.conn.execute("SELECT * FROM commands WHERE id=?", (command_id,)).fetchone()
            if row["handled_at"] is None:
                return apply_command(run.journal, row), False
            return row["result"], False
        finally:
            lock.release()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        row = run.journal.conn.execute("SELECT handled_at, result FROM commands WHERE id=?", (command_id,)).fetchone()
        if row["handled_at"] is not None:
            return row["result"], True
        time.sleep(0.05)
    return "queued; the controller will apply it at its next check", True


def stop_idle_run(run: OpenRun, reason: str, clock=time.time) -> str:
    """Stop a run no controller is executing (paused, or left by a crash): journal it, report it."""
    from .reporting import Reporter
    from .states import SessionState

    state = run.journal.session_state()
    if state in (SessionState.COMPLETED, SessionState.STOPPED):
        return f"the run is already {state}; nothing to stop"
    run.journal.set_session_state(SessionState.STOPPED, f"operator stop: {reason}")
    reporter = Reporter(run, clock)
    reporter.incident("operator_stop", None, None, {"reason": reason})
    reporter.checkpoint(None)
    return "stopped"
