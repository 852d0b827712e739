"""`[pod]`: a paused run stops the pod it runs on after `release_after_min`, so that it stops billing.

A real executable on PATH stands in for RunPod's `runpodctl`: it records its argv and environment.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime

from tests.conftest import run_cli, session_toml, status_json

APPROVAL = '\n[[phases.pre_gates]]\nid = "go"\nkind = "approval"\nmessage = "look at the data first"\n'
RATE = "gpu_hourly_usd = 3600\n"  # a dollar a second: billed seconds read as dollars
POD_ID = "pod-7x3k"


def stand_in(folder, name="runpodctl", *, exit_code=0):
    """An executable called `name` in `folder` that appends its argv and environment to `<name>.calls`."""
    folder.mkdir(exist_ok=True)
    calls = folder.parent / f"{name}.calls"
    script = folder / name
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(f"""
        import json, os, sys
        with open({str(calls)!r}, "a") as f:
            f.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}) + "\\n")
        if {exit_code}:
            print("Error: pod not found", file=sys.stderr)
        sys.exit({exit_code})
    """))
    script.chmod(0o755)
    return calls


def calls_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def pod_env(workspace, **extra):
    return {**os.environ, "PATH": f"{workspace / 'bin'}{os.pathsep}{os.environ['PATH']}", "RUNPOD_POD_ID": POD_ID,
            **extra}


def paused_session(workspace, pod):
    (workspace / "s.toml").write_text(session_toml("t", ["a", "b"], extra=RATE + pod, phase_extra={"b": APPROVAL}))
    return workspace / "s.toml", workspace / "run"


def run_until_paused(session, run_dir, env) -> subprocess.Popen:
    """A headless `phasegate run`, read until its pause is published; its controller then waits on the pod."""
    proc = subprocess.Popen([sys.executable, "-m", "phasegate", "run", str(session), "--run-dir", str(run_dir),
                             "--headless"], stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        event = json.loads(line)
        if event["type"] == "session_state" and event["state"] == "paused":
            break
    return proc


def events(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def seconds(event):
    ts = event["ts"]
    return ts if isinstance(ts, float | int) else datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def spent(run_dir):
    return status_json(run_dir)["budget"]["spent_usd"]


def test_a_pause_stops_the_pod_after_release_after_min_and_billing_stops_there(workspace):
    calls = stand_in(workspace / "bin")
    session, run_dir = paused_session(workspace, '\n[pod]\nprovider = "runpod"\nrelease_after_min = 0.02\n')
    result = run_cli("run", session, "--run-dir", run_dir, "--headless", env=pod_env(workspace))
    assert result.returncode == 4, result.stderr
    stream = events(result.stdout)
    paused = next(e for e in stream if e["type"] == "session_state" and e["state"] == "paused")
    stopped = next(e for e in stream if e["type"] == "pod_stopped")
    assert seconds(stopped) - seconds(paused) >= 0.02 * 60  # it waited `release_after_min` for an operator
    assert stopped["provider"] == "runpod" and stopped["state"] == "paused"
    [call] = calls_of(calls)
    assert call["argv"] == ["stop", "pod", POD_ID] and call["env"]["RUNPOD_POD_ID"] == POD_ID
    assert call["env"]["PHASEGATE_RUN_DIR"] == str(run_dir.resolve())
    at_stop = spent(run_dir)
    assert at_stop >= 0.02 * 60  # the wait itself was billed: the pod was up
    time.sleep(2)  # the pod is down for a while: none of this may be billed
    assert run_cli("approve", run_dir, "go").returncode == 0
    began = time.monotonic()
    assert run_cli("resume", run_dir, env=pod_env(workspace)).returncode == 0
    resumed_for = time.monotonic() - began
    assert spent(run_dir) - at_stop <= resumed_for + 0.05  # only the resumed controller's own time
    assert len(calls_of(calls)) == 1  # a completed run stops the pod only when `stop_on` asks


def test_a_failed_pod_stop_is_journaled_the_run_pauses_and_the_pause_is_billed_from_there(workspace):
    calls = stand_in(workspace / "bin", exit_code=1)
    session, run_dir = paused_session(workspace, '\n[pod]\nprovider = "runpod"\nrelease_after_min = 0.01\n')
    result = run_cli("run", session, "--run-dir", run_dir, "--headless", env=pod_env(workspace))
    assert result.returncode == 4, result.stderr
    failed = next(e for e in events(result.stdout) if e["type"] == "pod_stop_failed")
    assert "runpodctl exited 1: Error: pod not found" in failed["error"] and failed["state"] == "paused"
    assert len(calls_of(calls)) == 1
    status = status_json(run_dir)
    assert status["state"] == "paused" and status["next_action"]["action"] == "approve"
    at_failure = status["budget"]["spent_usd"]
    time.sleep(1)  # the pod still bills
    assert run_cli("approve", run_dir, "go").returncode == 0
    assert run_cli("resume", run_dir, env=pod_env(workspace)).returncode == 0
    assert spent(run_dir) - at_failure >= 1.0


def test_an_approval_within_the_wait_goes_on_without_a_resume(workspace):
    calls = stand_in(workspace / "bin")
    session, run_dir = paused_session(workspace, '\n[pod]\nprovider = "runpod"\nrelease_after_min = 5\n')
    proc = run_until_paused(session, run_dir, pod_env(workspace))
    try:
        approved = run_cli("approve", run_dir, "go")
        assert approved.returncode == 0 and approved.stderr.startswith("approved go")  # the live controller did
        out, _ = proc.communicate(timeout=60)  # it ends by itself: no resume
        assert proc.returncode == 0
        rest = events(out)
    finally:
        proc.kill()
    assert (workspace / "ledger.txt").read_text().splitlines() == ["start a 1", "end a 1", "start b 1", "end b 1"]
    assert [e["state"] for e in rest if e["type"] == "session_state"] == ["running", "completed"]
    assert calls_of(calls) == [] and status_json(run_dir)["state"] == "completed"


def test_an_operator_stop_within_the_wait_stops_the_run_and_with_stop_on_the_pod(workspace):
    calls = stand_in(workspace / "bin")
    pod = '\n[pod]\nprovider = "runpod"\nrelease_after_min = 5\nstop_on = ["stopped"]\n'
    session, run_dir = paused_session(workspace, pod)
    proc = run_until_paused(session, run_dir, pod_env(workspace))
    try:
        assert run_cli("stop", run_dir, "--reason", "not today").returncode == 0
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 3
        rest = events(out)
    finally:
        proc.kill()
    status = status_json(run_dir)
    assert status["state"] == "stopped" and "not today" in status["reason"]
    assert [e["state"] for e in rest if e["type"] == "pod_stopped"] == ["stopped"]
    assert [c["argv"] for c in calls_of(calls)] == [["stop", "pod", POD_ID]]


def test_stop_on_completed_runs_the_command_after_the_final_checkpoint(workspace):
    calls = stand_in(workspace / "bin", "stop-vm")
    pod = '\n[pod]\nprovider = "command"\nstop = ["bin/stop-vm", "my-vm"]\nstop_on = ["completed"]\n'
    (workspace / "s.toml").write_text(session_toml("t", ["a"], extra=pod))
    env = {k: v for k, v in os.environ.items() if k != "RUNPOD_POD_ID"}
    result = run_cli("run", workspace / "s.toml", "--run-dir", workspace / "run", "--headless", env=env)
    assert result.returncode == 0, result.stderr
    kinds = [e["type"] for e in events(result.stdout)]
    assert kinds[-1] == "pod_stopped" and kinds[-2] == "checkpoint_written"
    assert [c["argv"] for c in calls_of(calls)] == [["my-vm"]]


def test_the_runpod_sdk_stops_the_pod_when_runpodctl_is_absent(workspace):
    sdk = workspace / "sdk" / "runpod"
    sdk.mkdir(parents=True)
    record = workspace / "sdk.calls"
    (sdk / "__init__.py").write_text(textwrap.dedent(f"""
        api_key = None
        def stop_pod(pod_id):
            with open({str(record)!r}, "a") as f:
                f.write(f"{{pod_id}} {{api_key}}\\n")
    """))
    session, run_dir = paused_session(workspace, '\n[pod]\nprovider = "runpod"\nrelease_after_min = 0\n')
    env = {**os.environ, "RUNPOD_POD_ID": POD_ID, "RUNPOD_API_KEY": "rk-test",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(workspace / "sdk"), os.environ.get("PYTHONPATH")]))}
    result = run_cli("run", session, "--run-dir", run_dir, env=env)
    assert result.returncode == 4, result.stderr
    assert record.read_text().splitlines() == [f"{POD_ID} rk-test"]


def test_a_runpod_pod_without_its_id_is_refused_at_check_and_run(workspace):
    stand_in(workspace / "bin")
    session, run_dir = paused_session(workspace, '\n[pod]\nprovider = "runpod"\n')
    env = {**pod_env(workspace)}
    del env["RUNPOD_POD_ID"]
    for args in (("check", session), ("run", session, "--run-dir", run_dir)):
        result = run_cli(*args, env=env)
        assert result.returncode == 2 and "pod.provider" in result.stderr and "RUNPOD_POD_ID is not set" in result.stderr
        assert "Traceback" not in result.stderr
    assert not run_dir.exists()


def test_pod_settings_that_cannot_work_are_refused_and_the_old_key_is_deprecated(workspace):
    (workspace / "s.toml").write_text(session_toml("t", ["a"], extra='\n[pod]\nprovider = "command"\n'))
    refused = run_cli("check", workspace / "s.toml")
    assert refused.returncode == 2 and 'provider = "command" needs `stop`' in refused.stderr
    (workspace / "s.toml").write_text(session_toml("t", ["a"], extra="release_when_paused = true\n"))
    warned = run_cli("check", workspace / "s.toml")
    assert warned.returncode == 0 and "release_when_paused is deprecated and ignored" in warned.stderr
