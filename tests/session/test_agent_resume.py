"""An agent that knows nothing but CHECKPOINT.md can carry a run to its end."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import yaml

from tests.conftest import session_toml, status_json

APPROVAL = '\n[[phases.pre_gates]]\nid = "look"\nkind = "approval"\nmessage = "check the data"\n'


def agent_step(run_dir) -> int:
    """Read only CHECKPOINT.md's front matter; approve what waits, then run the resume command as written."""
    front = yaml.safe_load((run_dir / "CHECKPOINT.md").read_text().split("---")[1])
    for gate in front["pending_gates"]:
        command = shlex.split(gate["approve_command"].replace("TEXT", "'approved by the agent'"))
        assert subprocess.run([sys.executable, "-m", *command], capture_output=True).returncode == 0
    if front["resume_command"] is None:
        return 0
    return subprocess.run([sys.executable, "-m", *shlex.split(front["resume_command"])], capture_output=True).returncode


def test_agent_resumes_after_a_stop_and_a_pause(workspace):
    (workspace / "s.toml").write_text(session_toml("agent", ["a", "b", "c"], phase_extra={"c": APPROVAL}))
    run_dir = workspace / "run"
    env = {**os.environ, "PHASE_SLEEP": "20"}
    controller = subprocess.Popen([sys.executable, "-m", "phasegate", "run", str(workspace / "s.toml"), "--run-dir",
                                   str(run_dir), "--headless"], stdout=subprocess.PIPE, text=True, env=env)
    for line in controller.stdout:
        if json.loads(line)["type"] == "phase_started":
            break
    subprocess.run([sys.executable, "-m", "phasegate", "stop", str(run_dir), "--reason", "context reset"], check=True,
                   capture_output=True)
    controller.stdout.read()
    assert controller.wait(timeout=60) == 3
    codes = [agent_step(run_dir) for _ in range(3)]  # stopped -> paused at the gate -> completed
    assert codes[-1] == 0 and status_json(run_dir)["state"] == "completed"
    ledger = (workspace / "ledger.txt").read_text().splitlines()
    assert ledger.count("end b 1") == 1 and ledger.count("end c 1") == 1
