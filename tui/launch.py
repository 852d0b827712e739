"""Starting the headless controller as its own process, and running the TUI for the CLI (no textual here)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

from phasegate.session.errors import ExitCode, RunDirError
from phasegate.session.rundir import RunDir, controller_is_live

# A phase id cannot start with "_", so this log never collides with a phase's own log.
CONTROLLER_LOG = "logs/_controller.log"
LAST_WRITES_S = 30  # how long quitting waits for a finishing controller (a full disk can make writes slow)

_EXIT_BY_STATE = {"completed": ExitCode.COMPLETED, "stopped": ExitCode.STOPPED, "paused": ExitCode.PAUSED,
                  "failed": ExitCode.INTERNAL_ERROR}


def controller_argv(run_dir: Path) -> list[str]:
    """The command line of a headless controller continuing `run_dir`."""
    return [sys.executable, "-m", "phasegate", "resume", str(run_dir), "--headless"]


def spawn_controller(run_dir: Path, argv: list[str] | None = None) -> subprocess.Popen:
    """Start `phasegate resume RUN_DIR --headless` (or `argv`, a controller of the same run) in its own
    session, its output in logs/_controller.log.

    Its own session: it outlives the TUI, and a terminal's hang-up or Ctrl-C never reaches it.
    """
    root = Path(run_dir).resolve()
    if controller_is_live(RunDir(root)):
        raise RunDirError(f"{root}: a controller is already running this run; attach with `phasegate watch {root}`")
    log_path = root / CONTROLLER_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv or controller_argv(root), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)


def exit_code_for(state: str, controller_live: bool) -> int:
    """The CLI exit code after the TUI closes: the run's own code, or 0 when it goes on headless."""
    if controller_live:
        return int(ExitCode.COMPLETED)
    return int(_EXIT_BY_STATE.get(state, ExitCode.COMPLETED))


FINAL_STATES = ("completed", "stopped", "paused", "failed")


def _after_last_writes(app, child: subprocess.Popen):
    """The run once the controller that wrote its final state has also written the incident report
    and the checkpoint that follow it (seconds at most), so what is printed next is complete."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=LAST_WRITES_S)
    return app.reader.read().snapshot


def run_tui(run_dir: Path, *, mode: str, child: subprocess.Popen | None = None) -> int:
    """Run the full-screen UI on a run until the operator quits; returns the CLI's exit code."""
    from .app import create_app

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
