"""Starting the headless controller of a run as its own process, and the CLI's exit code after the TUI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from phasegate.floor.errors import ExitCode, RunDirError
from phasegate.floor.rundir import RunDir, controller_is_live


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
    log_path = RunDir(root).controller_log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv or controller_argv(root), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)


def exit_code_for(state: str, controller_live: bool) -> int:
    """The CLI exit code after the TUI closes: the run's own code, or 0 when it goes on headless."""
    if controller_live:
        return int(ExitCode.COMPLETED)
    return int(ExitCode.for_session_state(state))
