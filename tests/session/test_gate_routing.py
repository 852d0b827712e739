"""Gates in a running session: pause and approve, waive, retry on failure, policy re-check, phase 0."""

import json
import os
import subprocess
import sys

import yaml

from tests.conftest import run_cli, session_toml, status_json

APPROVAL = '\n[[phases.pre_gates]]\nid = "go"\nkind = "approval"\nmessage = "look at the data first"\n'


def write(workspace, text):
    (workspace / "s.toml").write_text(text)
    return workspace / "s.toml", workspace / "run"


def ledger(workspace):
    return (workspace / "ledger.txt").read_text().splitlines()


def front_matter(run_dir):
    return yaml.safe_load((run_dir / "CHECKPOINT.md").read_text().split("---")[1])


def test_pending_gate_pauses_until_approved_from_another_process(workspace):
    session, run_dir = write(workspace, session_toml("t", ["a", "b"], phase_extra={"b": APPROVAL}))
    assert run_cli("run", session, "--run-dir", run_dir).returncode == 4
    status = status_json(run_dir)
    assert status["state"] == "paused" and status["phases"][1]["state"] == "pending"
    assert [g["status"] for g in status["gates"]] == ["pending"]
    body = (run_dir / "CHECKPOINT.md").read_text()
    assert f"phasegate approve {run_dir} go" in body and front_matter(run_dir)["state"] == "paused"
    approved = run_cli("approve", run_dir, "go", "--note", "rows look fine")
    assert approved.returncode == 0 and "resume" in approved.stderr
    assert run_cli("resume", run_dir).returncode == 0
    assert ledger(workspace) == ["start a 1", "end a 1", "start b 1", "end b 1"]
    assert status_json(run_dir)["operator_actions"][0]["note"] == "rows look fine"


def test_approval_given_to_a_live_controller(workspace):
    session, run_dir = write(workspace, session_toml("t", ["slow", "b"], phase_extra={"b": APPROVAL}))
    env = {**os.environ, "PHASE_SLEEP": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "phasegate", "run", str(session), "--run-dir", str(run_dir),
                             "--headless"], stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if json.loads(line)["type"] == "phase_started":
            break
    result = run_cli("approve", run_dir, "go")
    assert result.returncode == 0 and result.stderr.startswith("approved go")  # applied by the live controller
    proc.stdout.read()
    assert proc.wait(timeout=60) == 0


THRESHOLD = '\n[[phases.gates]]\nkind = "threshold"\nfile = "{artifacts}/m.json"\nrules = ["score >= 0.9"]\n'
WRITE_METRIC = ('run = ["' + sys.executable + '", "-c", "import json, os; '
                "open(os.environ['PHASEGATE_ARTIFACTS'] + '/m.json', 'w').write(json.dumps(dict(score=0.5))); "
                "open('ledger.txt', 'a').write('measure\\\\n')\"]\n")


def measured_session(retries=0):
    return ('[session]\nname = "t"\n\n[[phases]]\nid = "measure"\n' + WRITE_METRIC
            + f"retries = {retries}\n" + THRESHOLD)


def test_failed_gate_is_retried_then_stops_with_an_incident(workspace):
    session, run_dir = write(workspace, measured_session(retries=1))
    assert run_cli("run", session, "--run-dir", run_dir).returncode == 3
    status = status_json(run_dir)
    assert ledger(workspace) == ["measure", "measure"]
    assert status["state"] == "stopped" and "measure.threshold failed" in status["reason"]
    gate = status["gates"][0]
    assert gate["status"] == "fail" and gate["attempt"] == 2 and gate["evidence"]
    assert "score" in open(status["incident"]).read()


def test_waiver_is_recorded_everywhere_and_the_phase_is_not_rerun(workspace):
    session, run_dir = write(workspace, measured_session())
    assert run_cli("run", session, "--run-dir", run_dir).returncode == 3
    assert run_cli("waive", run_dir, "measure.threshold", "--reason", "").returncode == 2
    assert run_cli("waive", run_dir, "measure.threshold", "--reason", "pilot only, checked by hand").returncode == 0
    assert run_cli("resume", run_dir).returncode == 0
    assert ledger(workspace) == ["measure"]
    status = status_json(run_dir)
    assert status["gates"][0]["status"] == "waived" and status["gates"][0]["waived"] == "pilot only, checked by hand"
    assert "WAIVED by the operator: pilot only, checked by hand" in (run_dir / "CHECKPOINT.md").read_text()
    human = run_cli("status", run_dir)
    assert "WAIVED" in human.stdout


def test_unknown_gate_id_is_invalid_input(workspace):
    session, run_dir = write(workspace, measured_session())
    run_cli("run", session, "--run-dir", run_dir)
    result = run_cli("approve", run_dir, "nope")
    assert result.returncode == 2 and "measure.threshold" in result.stderr


def test_versions_phase_zero(workspace):
    session, run_dir = write(workspace, '[session]\nname = "t"\n\n[[phases]]\nid = "versions"\nkind = "versions"\n')
    assert run_cli("run", session, "--run-dir", run_dir).returncode == 0
    record = json.loads((run_dir / "artifacts" / "versions" / "session_versions.json").read_text())
    assert record["python"]["version"] and "torch" in record["packages"] or record
    assert any(a["path"].endswith("session_versions.json") for a in status_json(run_dir)["artifacts"])


POLICY = '''
[[phases.pre_gates]]
kind = "policy"
root = "scripts"
recheck = "every_phase"
[[phases.pre_gates.rules]]
kind = "no_attribute_assign"
attribute = "chat_template"
value = "None"
allow = ["utils/clean_model_loader.py"]
'''


def test_policy_recheck_stops_a_session_whose_code_changed(workspace):
    (workspace / "scripts" / "utils").mkdir(parents=True)
    (workspace / "scripts" / "utils" / "clean_model_loader.py").write_text("tok.chat_template = None\n")
    (workspace / "scripts" / "train.py").write_text("print('ok')\n")
    breaker = ('[[phases]]\nid = "edit"\nrun = ["' + sys.executable + '", "-c", '
               '"open(\'scripts/train.py\', \'a\').write(\'tokenizer.chat_template = None\\\\n\')"]\n')
    text = session_toml("t", ["a"], phase_extra={"a": POLICY}) + "\n" + breaker + "\n" + session_toml("t", ["c"]).split("\n", 2)[2]
    session, run_dir = write(workspace, text)
    assert run_cli("check", session).returncode == 0
    assert run_cli("run", session, "--run-dir", run_dir).returncode == 3
    status = status_json(run_dir)
    assert [p["state"] for p in status["phases"]] == ["passed", "passed", "pending"]
    assert "a.pre.policy@c" in status["reason"]
    report = open(status["incident"]).read()
    assert "policy_recheck_failed" in report and "train.py" in json.dumps(status["gates"])
