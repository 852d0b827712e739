"""Running the TUI for the CLI until the operator quits (textual is imported only when it starts)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

from phasegate.floor.errors import ExitCode
from phasegate.tui.controller_process import exit_code_for

LAST_WRITES_S = 30  # how long quitting waits for a finishing controller (a full disk can make writes slow)
FINAL_STATES = ("completed", "stopped", "paused", "failed")


def _after_last_writes(app, child: subprocess.Popen):
    """The run once the controller that wrote its final state has also written the incident report
    and the checkpoint that follow it (seconds at most), so what is printed next is complete."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=LAST_WRITES_S)
    return app.reader.read().snapshot


def run_tui(run_dir: Path, *, mode: str, child: subprocess.Popen | None = None) -> int:
    """Run the full-screen UI on a run until the operator quits; returns the CLI's exit code."""
    from phasegate.tui.app import create_app

    app = create_app(Path(run_dir), mode=mode, child=child)
    app.run()
    final = app.reader.read().snapshot
    if child is not None and final.state in FINAL_STATES:
        final = _after_last_writes(app, child)
    app.reader.close()
    # The screen is gone: leave one line in the scrollback saying where the run stands.
    still = f"; its controller goes on headless (`phasegate watch {final.run_dir}` reattaches)" \
        if final.controller_live else ""
    print(f"phasegate: run {final.run_dir} is {final.state}{still}", file=sys.stderr)
    return int(ExitCode.COMPLETED) if mode == "watch" else exit_code_for(final.state, final.controller_live)
