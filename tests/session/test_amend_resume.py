"""Resume semantics an agent can predict, `amend`, and a checkpoint that always says where the run is."""

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from tests.conftest import run_cli, session_toml, status_json

THRESHOLD = '\n[[phases.gates]]\nkind = "threshold"\nfile = "{artifacts}/m.json"\nrules = ["score >= 0.9"]\n'
MEASURE = ('[[phases]]\nid = "measure"\nrun = ["' + sys.executable + '", "-c", "import json, os; '
           "open(os.environ['PHASEGATE_ARTIFACTS'] + '/m.json', 'w').write(json.dumps(dict(score=0.5))); "
           "open('ledger.txt', 'a').write('measure\\\\n')\"]\n")
APPROVAL = '\n[[phases.pre_gates]]\nid = "go"\nkind = "approval"\nmessage = "look at the data first"\n'


def write(workspace, text):
    (workspace / "s.toml").write_text(text)
    return workspace / "s.toml", workspace / "run"


def ledger(workspace):
    path = workspace / "ledger.txt"
    return path.read_text().splitlines() if path.exists() else []


def front_matter(run_dir):
    return yaml.safe_load((run_dir / "CHECKPOINT.md").read_text().split("---")[1])


def measured(workspace, after=""):
    return write(workspace, '[session]\nname = "t"\n\n' + MEASURE + THRESHOLD + after)


def test_a_failed_gate_is_not_rerun_by_a_plain_resume_and_leaves_no_phase_running(workspace):
    session, run_dir = measured(workspace)
    assert run_cli("run", session, "--run-dir", run_dir).returncode == 3
    status = status_json(run_dir)
    assert status["state"] == "stopped" and [p["state"] for p in status["phases"]] == ["failed"]
    assert status["next_action"]["action"] == "waive_or_amend" and status["next_action"]["requires_human"]
    assert f"phasegate waive {run_dir} measure.threshold --reason TEXT" in status["next_action"]["commands"]
    front = front_matter(run_dir)
    assert front["next_action"] == "waive_or_amend" and front["stop_trigger"] == "gate_failed"
    refused = run_cli("resume", run_dir, "--headless")
    assert refused.returncode == 3 and "--retry" in refused.stderr and "waive" in refused.stderr
    assert ledger(workspace) == ["measure"]  # nothing ran again
    assert status_json(run_dir)["phases"][0]["state"] == "failed"


def test_a_waiver_lets_the_attempt_that_ran_pass_without_running_it_again(workspace):
    session, run_dir = measured(workspace)
    run_cli("run", session, "--run-dir", run_dir)
    assert run_cli("waive", run_dir, "measure.threshold", "--reason", "0.5 is fine for a pilot").returncode == 0
    assert front_matter(run_dir)["next_action"] == "resume"  # the waiver rewrote the checkpoint at once
    assert run_cli("resume", run_dir).returncode == 0
    assert ledger(workspace) == ["measure"]
    assert status_json(run_dir)["phases"][0]["state"] == "passed"


def test_amending_only_a_gate_decides_the_same_attempt_again(workspace):
    session, run_dir = measured(workspace)
    run_cli("run", session, "--run-dir", run_dir)
    new = workspace / "new.toml"
    new.write_text(session.read_text().replace("score >= 0.9", "score >= 0.4"))
    amended = run_cli("amend", run_dir, "--session", new, "--reason", "0.9 was a typo")
    assert amended.returncode == 0, amended.stderr
    assert (run_dir / "session.v2.toml").read_text() == new.read_text()
    assert run_cli("resume", run_dir).returncode == 0
    assert ledger(workspace) == ["measure"]  # its command did not change: the gate decided the attempt that ran
    status = status_json(run_dir)
    assert status["plan_version"] == 2 and status["amendments"][0]["reason"] == "0.9 was a typo"
    assert any("amended" == a["action"] for a in status["operator_actions"])
    assert "## Plan amendments" in (run_dir / "CHECKPOINT.md").read_text()


def test_retry_runs_the_failed_phase_again(workspace):
    session, run_dir = measured(workspace)
    run_cli("run", session, "--run-dir", run_dir)
    assert run_cli("resume", run_dir, "--retry").returncode == 3  # same inputs, same score: fails again
    assert ledger(workspace) == ["measure", "measure"]


def test_budget_stop_then_amend_then_resume_completes(workspace):
    session, run_dir = write(workspace, session_toml("t", ["a", "slow"], extra="budget_usd = 2.0\n"
                                                     "gpu_hourly_usd = 3600.0\n"))
    env = {**os.environ, "PHASE_SLEEP": "1.5"}
    assert run_cli("run", session, "--run-dir", run_dir, env=env).returncode == 3
    status = status_json(run_dir)
    assert status["stop_trigger"] == "budget_exhausted" and status["next_action"]["action"] == "waive_or_amend"
    assert any("session.budget_usd=" in c for c in status["next_action"]["commands"])
    assert run_cli("resume", run_dir, env=env).returncode == 3  # the budget is still spent: not resumed
    frozen = (run_dir / "session.toml").read_text()
    amended = run_cli("amend", run_dir, "--set", "session.budget_usd=500", "--reason", "the pilot looked good")
    assert amended.returncode == 0, amended.stderr
    assert "session.budget_usd: 2.0 -> 500" in amended.stderr
    assert (run_dir / "session.toml").read_text() == frozen  # version 1 stays as it was
    assert "budget_usd = 500" in (run_dir / "session.v2.toml").read_text()
    assert run_cli("resume", run_dir, env=env).returncode == 0
    status = status_json(run_dir)
    assert status["state"] == "completed" and status["budget"]["allocation_usd"] == 500
    assert ledger(workspace).count("start a 1") == 1  # the completed phase did not run again


def test_amend_refuses_to_change_what_is_done(workspace):
    later = session_toml("x", ["later"], phase_extra={"later": APPROVAL}).split("\n", 2)[2]
    session, run_dir = measured(workspace, after="\n" + later)
    run_cli("run", session, "--run-dir", run_dir)
    run_cli("waive", run_dir, "measure.threshold", "--reason", "ok")
    assert run_cli("resume", run_dir).returncode == 4  # measure passed; later waits on its gate
    for args, words in [
        (["--set", "phases.measure.retries=3"], "phase 'measure' is completed"),
        (["--set", "session.name=other"], "session.name cannot change"),
        (["--set", "phases.nope.retries=1"], "no phase 'nope'"),
        (["--set", "session.budget_usd=-1"], "budget_usd"),
        (["--set", "nonsense"], "KEY=VALUE"),
        (["--set", "session.budget_usd=5"], "needs a reason"),
    ]:
        reason = [] if words == "needs a reason" else ["--reason", "test"]
        result = run_cli("amend", run_dir, *args, *reason)
        assert result.returncode == 2 and words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (run_dir / "session.v2.toml").exists()


FAILS = '[phases.env]\nPHASE_EXIT_B = "7"\n'


def test_a_later_phase_is_fixed_by_amend_before_it_runs(workspace):
    session, run_dir = write(workspace, session_toml("t", ["a", "b"], phase_extra={"b": FAILS + APPROVAL}))
    assert run_cli("run", session, "--run-dir", run_dir).returncode == 4  # paused before b, on its gate
    wrong = run_cli("amend", run_dir, "--set", "phases.b.env.PHASE_EXIT_B=0", "--reason", "x")
    assert wrong.returncode == 2 and "PHASE_EXIT_B" in wrong.stderr  # validated like `check`: env values are text
    fixed = run_cli("amend", run_dir, "--set", 'phases.b.env.PHASE_EXIT_B="0"', "--reason", "b must not fail")
    assert fixed.returncode == 0, fixed.stderr
    assert front_matter(run_dir)["plan_version"] == 2
    run_cli("approve", run_dir, "go")
    assert run_cli("resume", run_dir).returncode == 0
    assert ledger(workspace) == ["start a 1", "end a 1", "start b 1", "end b 1"]


def test_resume_of_a_run_waiting_on_a_gate_says_so_and_runs_nothing(workspace):
    session, run_dir = write(workspace, session_toml("t", ["a", "b"], phase_extra={"b": APPROVAL}))
    assert run_cli("run", session, "--run-dir", run_dir, "--headless").returncode == 4
    status = status_json(run_dir)
    assert status["next_action"]["action"] == "approve" and status["next_action"]["requires_human"]
    assert status["pending_gates"][0]["approve_command"] == f"phasegate approve {run_dir} go --note TEXT"
    again = run_cli("resume", run_dir, "--headless")
    assert again.returncode == 4 and f"phasegate approve {run_dir} go" in again.stderr  # not silent
    assert ledger(workspace) == ["start a 1", "end a 1"]


def wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_checkpoint_after_kill_9_mid_phase_says_where_the_run_really_is(workspace):
    session, run_dir = write(workspace, session_toml("t", ["a", "slow"], phase_extra={"slow": APPROVAL}))
    assert run_cli("run", session, "--run-dir", run_dir).returncode == 4
    assert run_cli("approve", run_dir, "go").returncode == 0
    env = {**os.environ, "PHASE_SLEEP": "30"}
    controller = subprocess.Popen([sys.executable, "-m", "phasegate", "resume", str(run_dir), "--headless"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_for(lambda: "start slow 1" in ledger(workspace))
    wait_for(lambda: (front_matter(run_dir).get("running") or {}).get("phase") == "slow")
    controller.send_signal(signal.SIGKILL)
    controller.wait()
    front = front_matter(run_dir)
    assert front["state"] == "running" and front["running"]["phase"] == "slow" and front["pending_gates"] == []
    assert front["next_action"] == "resume" and f"phasegate resume {run_dir}" in front["commands"]
    assert "approve_command" not in json.dumps(front)
    assert "sha256" not in (run_dir / "CHECKPOINT.md").read_text().split("---")[1]  # the list is elsewhere
    listed = json.loads((run_dir / front["artifacts"]["list"]).read_text())
    assert [a["path"] for a in listed] == ["artifacts/a/marker.txt"] and front["artifacts"]["count"] == 1
    status = status_json(run_dir)
    assert status["next_action"]["action"] == "resume" and "controller is gone" in status["next_action"]["reason"]
    assert status["running"]["phase"] == "slow" and status["running"]["elapsed_s"] >= 0


def test_amend_of_a_live_run_applies_at_the_next_phase_boundary(workspace):
    session, run_dir = write(workspace, session_toml("t", ["slow", "b"], extra="budget_usd = 5.0\n",
                                                     phase_extra={"b": FAILS}))
    env = {**os.environ, "PHASE_SLEEP": "1.5"}  # slow runs 4.5 s: both amends come while it runs
    controller = subprocess.Popen([sys.executable, "-m", "phasegate", "run", str(session), "--run-dir",
                                   str(run_dir), "--headless"], stdout=subprocess.DEVNULL, env=env)
    wait_for(lambda: "start slow 1" in ledger(workspace))
    running = run_cli("amend", run_dir, "--set", "phases.slow.retries=2", "--reason", "x")
    assert running.returncode == 2 and "phase 'slow' is running" in running.stderr
    amended = run_cli("amend", run_dir, "--set", "session.budget_usd=9", "--set", 'phases.b.env.PHASE_EXIT_B="0"',
                      "--reason", "more room")
    assert amended.returncode == 0 and "amended: plan v2" in amended.stderr, amended.stderr
    assert controller.wait(timeout=60) == 0
    status = status_json(run_dir)
    assert status["plan_version"] == 2 and status["budget"]["allocation_usd"] == 9.0


def test_a_complete_run_is_not_amended_and_recover_keeps_the_amended_plan(workspace):
    session, run_dir = measured(workspace)
    run_cli("run", session, "--run-dir", run_dir)
    new = workspace / "new.toml"
    new.write_text(session.read_text().replace("score >= 0.9", "score >= 0.4"))
    assert run_cli("amend", run_dir, "--session", new, "--reason", "lower bar").returncode == 0
    assert run_cli("resume", run_dir).returncode == 0
    done = run_cli("amend", run_dir, "--set", "session.budget_usd=9", "--reason", "more")
    assert done.returncode == 2 and "the run is complete" in done.stderr
    (run_dir / "session.v3.toml").write_text("[session]\nname = \"t\"\n")  # a stray file the journal never adopted
    (run_dir / "state.db").write_bytes(b"\0" * 8192)  # the journal is lost: recover from the checkpoint
    recovered = run_cli("recover", run_dir, "--to", workspace / "again")
    assert recovered.returncode == 0, recovered.stderr
    assert (workspace / "again" / "session.toml").read_text() == new.read_text()  # v2, the plan it completed under


def test_a_completed_phase_whose_script_is_gone_blocks_neither_amend_nor_recover(workspace):
    (workspace / "first.py").write_text((workspace / "phase.py").read_text())
    text = session_toml("t", ["a", "b"], phase_extra={"b": APPROVAL}).replace('"phase.py"', '"first.py"', 1)
    session, run_dir = write(workspace, text)
    assert run_cli("run", session, "--run-dir", run_dir).returncode == 4
    (workspace / "first.py").unlink()  # phase a is done: it never runs again
    amended = run_cli("amend", run_dir, "--set", "session.budget_usd=9", "--reason", "more")
    assert amended.returncode == 0, amended.stderr
    (run_dir / "state.db").write_bytes(b"\0" * 8192)
    recovered = run_cli("recover", run_dir, "--to", workspace / "again")
    assert recovered.returncode == 0 and "recovered a" in recovered.stdout, recovered.stderr
