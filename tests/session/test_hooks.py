"""`[[hooks]]` end to end: real hook scripts run by the real CLI on run events, bounded, logged, harmless."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from phasegate.journal.events import EventKind
from tests.conftest import events_of, run_cli, session_toml

# A hook that writes what it was given (argv and its PHASEGATE_* variables) to a file, then says something.
RECORDER = '''
import json, os, sys
out = os.path.join(os.environ["PHASEGATE_SESSION_DIR"], "hook-" + os.environ["PHASEGATE_EVENT"] + ".json")
with open(out, "w") as f:
    json.dump({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items() if k.startswith("PHASEGATE_")},
               "cwd": os.getcwd()}, f)
print("synced", os.environ.get("API_TOKEN"))
sys.exit(int(os.environ.get("HOOK_EXIT", "0")))
'''
# A hook that starts a grandchild, then hangs: both must be ended at the timeout.
HANGER = '''
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(os.path.join(os.environ["PHASEGATE_SESSION_DIR"], "grandchild.pid"), "w").write(str(child.pid))
time.sleep(600)
'''


def write_session(workspace: Path, hooks: str, **kw) -> Path:
    (workspace / "recorder.py").write_text(RECORDER)
    (workspace / "hanger.py").write_text(HANGER)
    (workspace / "s.toml").write_text(session_toml("h", ["a", "b"], **kw) + "\n" + hooks)
    return workspace / "s.toml"


def test_a_hook_runs_on_completed_with_the_documented_variables_and_placeholders(workspace):
    hooks = (f'[[hooks]]\non = ["completed"]\n'
             f'run = ["{sys.executable}", "recorder.py", "{{run_dir}}", "{{event}}", "{{state}}", "{{run_id}}"]\n')
    session = write_session(workspace, hooks)
    run_dir = workspace / "run"
    env = {**os.environ, "API_TOKEN": "s3cr3t-token-value"}
    result = run_cli("run", session, "--run-dir", run_dir, env=env)
    assert result.returncode == 0, result.stderr
    seen = json.loads((workspace / "hook-completed.json").read_text())
    root = str(run_dir.resolve())
    assert seen["argv"] == [root, "completed", "completed", "run"]
    assert seen["cwd"] == str(workspace)
    completed = next(e.seq for e in events_of(run_dir, EventKind.SESSION_STATE) if e.data["state"] == "completed")
    variables = seen["env"]
    assert {k: variables[k] for k in ("PHASEGATE_RUN_DIR", "PHASEGATE_SESSION_DIR", "PHASEGATE_RUN_ID",
                                      "PHASEGATE_EVENT", "PHASEGATE_STATE", "PHASEGATE_EVENT_SEQ")} == {
        "PHASEGATE_RUN_DIR": root, "PHASEGATE_SESSION_DIR": str(workspace), "PHASEGATE_RUN_ID": "run",
        "PHASEGATE_EVENT": "completed", "PHASEGATE_STATE": "completed", "PHASEGATE_EVENT_SEQ": str(completed)}
    assert variables["PHASEGATE_MESSAGE"].startswith("phasegate h: completed\n")
    assert not (workspace / "hook-paused.json").exists()  # `on` names completed only
    log = (run_dir / "logs" / "_hooks.log").read_text()
    assert "synced [REDACTED:API_TOKEN]" in log and "s3cr3t-token-value" not in log and "exit 0" in log
    assert not events_of(run_dir, EventKind.HOOK_FAILED)


def test_a_failing_hook_is_journaled_and_leaves_the_outcome_alone(workspace):
    hooks = f'[[hooks]]\non = ["stopped"]\nrun = ["{sys.executable}", "recorder.py"]\n'
    session = write_session(workspace, hooks)
    run_dir = workspace / "run"
    result = run_cli("run", session, "--run-dir", run_dir, env={**os.environ, "PHASE_EXIT_B": "3", "HOOK_EXIT": "9"})
    assert result.returncode == 3, result.stderr  # stopped by the phase, as without the hook
    assert json.loads((workspace / "hook-stopped.json").read_text())["env"]["PHASEGATE_PHASE"] == "b"
    [failed] = events_of(run_dir, EventKind.HOOK_FAILED)
    assert failed.data["error"] == "exit code 9" and failed.data["hook"] == 0 and failed.data["event"] == "stopped"


def test_a_hanging_hook_is_ended_at_its_timeout_with_what_it_started(workspace):
    hooks = f'[[hooks]]\non = ["completed"]\nrun = ["{sys.executable}", "hanger.py"]\ntimeout_s = 2\n'
    session = write_session(workspace, hooks)
    run_dir = workspace / "run"
    started = time.monotonic()
    result = run_cli("run", session, "--run-dir", run_dir)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 60
    [failed] = events_of(run_dir, EventKind.HOOK_FAILED)
    assert "timeout_s (2 s)" in failed.data["error"]
    grandchild = int((workspace / "grandchild.pid").read_text())
    assert not Path(f"/proc/{grandchild}").exists() or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split()[2]


def test_a_hook_with_an_unknown_placeholder_is_refused(workspace):
    session = write_session(workspace, '[[hooks]]\nrun = ["echo", "{artifacts}"]\n')
    result = run_cli("check", session)
    assert result.returncode == 2 and "{artifacts}" in result.stderr and "{run_dir}" in result.stderr
