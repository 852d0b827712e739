"""The real `phasegate` commands on a real terminal: tmux runs them, sends keys and reads the pane.

A terminal is an outside process, so these tests poll its pane until the expected text appears
(with a deadline); nothing else can tell them when the screen has been drawn.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phasegate.floor.rundir import RunDir, controller_is_live
from tests.tui.conftest import make_session

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None,
    reason="tmux is not installed: these tests drive the real `phasegate` UI in a tmux pane (apt-get install tmux)")


class Pane:
    """A detached tmux session on a private server, 100×30, running one shell command."""

    def __init__(self, socket: Path, command: str) -> None:
        self.base = ["tmux", "-S", str(socket)]
        # The trailing sleep keeps the pane, with the command's last words, readable after it exits.
        subprocess.run([*self.base, "new-session", "-d", "-x", "100", "-y", "30", "-s", "t",
                        f"{command}; echo PHASEGATE-EXIT=$?; sleep 60"], check=True, env={**os.environ})

    def text(self) -> str:
        return subprocess.run([*self.base, "capture-pane", "-p", "-J", "-t", "t"], capture_output=True,
                              text=True, check=True).stdout

    def wait_for(self, *needles: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needles} not on screen after {timeout} s:\n{text}")
            time.sleep(0.05)

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "t", *keys], check=True)

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


@pytest.fixture
def pane_factory(tmp_path):
    panes: list[Pane] = []

    def start(command: str) -> Pane:
        panes.append(Pane(tmp_path / f"tmux-{len(panes)}.sock", command))
        return panes[-1]

    yield start
    for pane in panes:
        pane.close()


def cli(*args: object) -> str:
    return " ".join([sys.executable, "-m", "phasegate", *map(str, args)])


def test_watch_shows_a_run_opens_its_checkpoint_and_quits(pane_factory, run_copy):
    run_dir = run_copy("paused")
    pane = pane_factory(cli("watch", run_dir))
    pane.wait_for("‖ PAUSED", "PENDING", "eval.pre.approval", "a Approve")
    pane.keys("c")
    pane.wait_for("── CHECKPOINT.md ──", "state: paused")
    pane.keys("Escape")
    pane.wait_for("Gates", "a Approve")
    pane.keys("q")
    text = pane.wait_for("PHASEGATE-EXIT=0")
    assert f"phasegate: run {run_dir} is paused" in text


def test_run_on_a_terminal_leaves_its_controller_running_headless(pane_factory, tmp_path):
    go = tmp_path / "go"
    session = make_session(tmp_path, f"wait:{go}", approval=True)
    run_dir = tmp_path / "run"
    pane = pane_factory(f"cd {tmp_path} && {cli('run', session, '--run-dir', run_dir)}")
    pane.wait_for("▶ RUNNING", "controller live", "· run", "train · RUNNING")
    pane.keys("q")
    pane.wait_for("is still running", "leave it running headless")
    pane.keys("l")
    pane.wait_for("PHASEGATE-EXIT=0", "its controller goes on headless")
    assert controller_is_live(RunDir(run_dir))  # the UI is gone; the session is not
    go.touch()
    deadline = time.monotonic() + 30
    while controller_is_live(RunDir(run_dir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    with sqlite3.connect(run_dir / "state.db") as conn:
        assert conn.execute("SELECT state FROM run").fetchone()[0] == "paused"
    assert (run_dir / "logs" / "_controller.log").read_text().count('"type": "session_state"') >= 2


def test_a_crashed_controller_is_unmistakable_and_r_resumes_it(pane_factory, tmp_path):
    go = tmp_path / "go"
    session = make_session(tmp_path, f"wait:{go}")
    run_dir = tmp_path / "run"
    controller = subprocess.Popen([sys.executable, "-m", "phasegate", "run", str(session), "--run-dir", str(run_dir),
                                   "--headless"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (run_dir / "logs" / "train.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    controller.kill()  # SIGKILL: the journal still says "running"
    controller.wait()
    pane = pane_factory(cli("watch", run_dir))
    text = pane.wait_for("CONTROLLER GONE", "press r to resume", timeout=30)
    assert "▶ RUNNING" not in text
    pane.keys("r")
    pane.wait_for("controller live", timeout=30)
    go.touch()
    pane.wait_for("✓ COMPLETED", timeout=60)
    pane.keys("q")
    pane.wait_for("PHASEGATE-EXIT=0")
