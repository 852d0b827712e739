"""The controller end to end, through the real CLI and real child processes."""

import json
import subprocess
import sys
import time

import yaml

from tests.conftest import run_cli, session_toml, status_json


def setup(workspace, phases, **kw):
    (workspace / "s.toml").write_text(session_toml("t", phases, **kw))
    return workspace / "s.toml", workspace / "run"


def ledger(workspace):
    return (workspace / "ledger.txt").read_text().split("\n")[:-1]


def test_run_completes_and_reports(workspace):
    session, run_dir = setup(workspace, ["a", "b"], extra="budget_usd = 5.0\ngpu_hourly_usd = 2.0\n")
    result = run_cli("run", session, "--run-dir", run_dir, "--headless")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]  # stdout holds JSON lines only
    assert events[-1]["type"] == "checkpoint_written" and any(e["type"] == "progress" for e in events)
    status = status_json(run_dir)
    assert status["state"] == "completed"
    assert [(p["id"], p["state"], p["attempts"]) for p in status["phases"]] == [("a", "passed", 1), ("b", "passed", 1)]
    assert status["budget"]["allocation_usd"] == 5.0 and status["budget"]["spent_usd"] >= 0
    assert {a["path"] for a in status["artifacts"]} == {"artifacts/a/marker.txt", "artifacts/b/marker.txt"}
    assert ledger(workspace) == ["start a 1", "end a 1", "start b 1", "end b 1"]
    front = yaml.safe_load((run_dir / "CHECKPOINT.md").read_text().split("---")[1])
    assert front["state"] == "completed" and front["next_phase"] is None
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["01-a.md", "02-b.md", "03-completed.md", "artifacts.json"]
    assert (run_dir / "session.toml").read_text() == session.read_text()


def test_failure_retries_then_stops_with_incident(workspace):
    session, run_dir = setup(workspace, ["a", "b"], phase_extra={"b": "retries = 1\n"})
    env = {**__import__("os").environ, "PHASE_EXIT_B": "7"}
    result = run_cli("run", session, "--run-dir", run_dir, env=env)
    assert result.returncode == 3
    status = status_json(run_dir)
    assert status["state"] == "stopped" and "exit code 7" in status["reason"]
    assert status["phases"][1]["attempts"] == 2 and status["phases"][1]["state"] == "failed"
    incident = status["incident"]
    assert incident and "exit code 7" in open(incident).read()
    front = yaml.safe_load((run_dir / "CHECKPOINT.md").read_text().split("---")[1])
    assert front["next_action"] == "retry" and front["next_phase"] == "b" and front["requires_human"] is False
    assert f"phasegate resume {run_dir} --retry" in front["commands"]
    # a plain resume does not run the failed phase again: it names the options, exit 3
    refused = run_cli("resume", run_dir)
    assert refused.returncode == 3 and "--retry" in refused.stderr and "Traceback" not in refused.stderr
    assert "start b 3" not in ledger(workspace)
    # fixed: resume --retry runs only what is left
    assert run_cli("resume", run_dir, "--retry").returncode == 0
    assert ledger(workspace).count("start a 1") == 1 and "end b 3" in ledger(workspace)


def test_stop_from_another_process_then_resume(workspace):
    session, run_dir = setup(workspace, ["a", "slow", "c"])
    env = {**__import__("os").environ, "PHASE_SLEEP": "20"}
    controller = subprocess.Popen([sys.executable, "-m", "phasegate", "run", str(session), "--run-dir", str(run_dir),
                                   "--headless"], stdout=subprocess.PIPE, text=True, env=env)
    for line in controller.stdout:  # wait until the slow phase is running, from the event stream itself
        event = json.loads(line)
        if event["type"] == "phase_started" and event["phase"] == "slow":
            break
    stopped = run_cli("stop", run_dir, "--reason", "wrong learning rate")
    assert stopped.returncode == 0, stopped.stderr
    controller.stdout.read()
    assert controller.wait(timeout=30) == 3
    status = status_json(run_dir)
    assert status["state"] == "stopped" and "wrong learning rate" in status["reason"]
    assert status["phases"][1]["state"] == "failed" and status["incident"]
    # a person stopped it: an agent's plain resume does not undo that; the checkpoint says so
    front = yaml.safe_load((run_dir / "CHECKPOINT.md").read_text().split("---")[1])
    assert front["requires_human"] is True and front["commands"] == [f"phasegate resume {run_dir} --force"]
    refused = run_cli("resume", run_dir)
    assert refused.returncode == 3 and "--force" in refused.stderr
    assert status_json(run_dir)["state"] == "stopped"
    assert run_cli("resume", run_dir, "--force").returncode == 0
    assert status_json(run_dir)["state"] == "completed"


def test_timeout_stops_the_session(workspace):
    session, run_dir = setup(workspace, ["slow"], phase_extra={"slow": "timeout_s = 0.5\n"})
    env = {**__import__("os").environ, "PHASE_SLEEP": "30"}
    start = time.monotonic()
    assert run_cli("run", session, "--run-dir", run_dir, env=env).returncode == 3
    assert time.monotonic() - start < 20
    assert "timed out" in status_json(run_dir)["reason"]


def test_resume_of_completed_run_runs_nothing(workspace):
    session, run_dir = setup(workspace, ["a"])
    assert run_cli("run", session, "--run-dir", run_dir).returncode == 0
    assert run_cli("resume", run_dir).returncode == 0
    assert ledger(workspace) == ["start a 1", "end a 1"]


def test_invalid_inputs_exit_2_with_clear_messages(workspace, tmp_path):
    missing = run_cli("resume", tmp_path / "nowhere")
    assert missing.returncode == 2 and "no such run folder" in missing.stderr
    session, run_dir = setup(workspace, ["a"])
    assert run_cli("run", session, "--run-dir", run_dir).returncode == 0
    again = run_cli("run", session, "--run-dir", run_dir)
    assert again.returncode == 2 and "not empty" in again.stderr
    (run_dir / "session.toml").write_text((run_dir / "session.toml").read_text() + "\n# edited\n")
    edited = run_cli("resume", run_dir)
    assert edited.returncode == 2 and "edited after the run started" in edited.stderr


def test_help_documents_exit_codes():
    result = run_cli("--help")
    assert result.returncode == 0 and "4 paused" in result.stdout and "3 stopped" in result.stdout
