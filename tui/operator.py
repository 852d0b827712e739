"""The operator's commands from the TUI: the same journal rows and core functions the CLI uses.

Every method blocks (it may wait for a live controller to apply a command), so the app calls them
from worker threads; each call opens its own journal connection for that thread.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from phasegate.floor.rundir import controller_is_live
from phasegate.session.commands import stop_idle_run, submit
from phasegate.session.runs import open_run
from phasegate.tui.controller_process import controller_argv, spawn_controller


def spawn_for_a_person(run_dir: Path) -> subprocess.Popen:
    """The controller a person starts with `r`: they may undo an operator's stop (`resume --force`)."""
    return spawn_controller(run_dir, argv=[*controller_argv(Path(run_dir).resolve()), "--force"])


class Operator:
    """Writes stop, approve and waive commands for one run and starts its headless controller."""

    def __init__(self, run_dir: Path, *, spawn: Callable[[Path], subprocess.Popen] = spawn_for_a_person) -> None:
        self.run_dir = Path(run_dir)
        self._spawn = spawn
        self.children: list[subprocess.Popen] = []

    def _gate(self, kind: str, args: dict) -> str:
        run = open_run(self.run_dir)
        try:
            result, live = submit(run, kind, args)
        finally:
            run.journal.close()
        return result if live else f"{result}; press r to resume the run"

    def stop(self, reason: str) -> str:
        """Stop the run: a command to its live controller, else a stop journaled here (as `phasegate stop`)."""
        run = open_run(self.run_dir)
        try:
            if controller_is_live(run.run_dir):
                return submit(run, "stop", {"reason": reason})[0]
            return stop_idle_run(run, reason)
        finally:
            run.journal.close()

    def approve(self, gate_id: str, note: str) -> str:
        """Approve a gate that waits for an operator."""
        return self._gate("approve", {"gate_id": gate_id, "note": note})

    def waive(self, gate_id: str, reason: str) -> str:
        """Waive a failed or pending gate; the reason is journaled forever."""
        if not reason.strip():
            raise ValueError("a waiver needs a reason")
        return self._gate("waive", {"gate_id": gate_id, "reason": reason})

    def resume(self) -> str:
        """Start a headless controller on the run (it continues where the run stands)."""
        child = self._spawn(self.run_dir)
        self.children.append(child)
        return f"controller started (pid {child.pid}); its output goes to {self.run_dir / 'logs/_controller.log'}"

    def reap(self) -> list[str]:
        """Collect controllers this UI started that have exited; say which ended with an error."""
        ended = [c for c in self.children if c.poll() is not None]
        self.children = [c for c in self.children if c.returncode is None]
        # 0, 3 and 4 are a completed, stopped and paused run: the journal already says so.
        return [f"the controller (pid {c.pid}) exited with code {c.returncode}; see "
                f"{self.run_dir / 'logs/_controller.log'}" for c in ended if c.returncode not in (0, 3, 4)]
