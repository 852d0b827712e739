"""No secret is stored or shown raw: not in the journal, a checkpoint, an incident, a log or any output."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

from phasegate.floor.redact import Redactor
from tests.conftest import run_cli

# Set in the session file's `[phases.env]` only: never in the controller's own environment.
FILE_SECRET = "s3cr3t-from-the-session-file"
# A well-known token format, set in the controller's environment.
ENV_SECRET = "hf_" + "A1b2C3d4E5f6G7h8I9j0K1l2"

LEAKER = '''
import json, os, sys
secrets = os.environ["SERVICE_TOKEN"] + " " + os.environ["HF_TOKEN"]
events = os.fdopen(int(os.environ["PHASEGATE_EVENTS_FD"]), "w", buffering=1)
for event in [{"type": "metric", "name": "loss " + secrets, "value": 1.0},
              {"type": "progress", "done": 1, "total": 2, "step": "step " + secrets},
              {"type": "log", "message": "log " + secrets},
              {"type": "mystery", "note": secrets},
              {"type": "progress", "done": "bad " + secrets},
              {"type": "stop", "trigger": "leak", "summary": "summary " + secrets,
               "evidence": {"key " + secrets: "value " + secrets}}]:
    events.write(json.dumps(event) + "\\n")
events.write("not json " + secrets + "\\n")
print("stdout " + secrets)
print("stderr " + secrets, file=sys.stderr)
sys.exit(3)
'''

MODES = '''
import json, os, stat
db = os.path.join(os.environ["PHASEGATE_RUN_DIR"], "state.db")
modes = {suffix: stat.S_IMODE(os.stat(db + suffix).st_mode) for suffix in ("", "-wal", "-shm")}
open(os.path.join(os.environ["PHASEGATE_ARTIFACTS"], "modes.json"), "w").write(json.dumps(modes))
'''


def _session(workspace: Path, script: str) -> Path:
    (workspace / "phase.py").write_text(script)
    (workspace / "s.toml").write_text(
        f'[session]\nname = "secrets"\n[[phases]]\nid = "leak"\nrun = ["{sys.executable}", "phase.py"]\n'
        f'[phases.env]\nSERVICE_TOKEN = "{FILE_SECRET}"\n')
    return workspace / "s.toml"


def test_no_secret_reaches_the_journal_a_report_or_any_output(workspace):
    env = {**os.environ, "HF_TOKEN": ENV_SECRET}
    run_dir = workspace / "run"
    result = run_cli("run", _session(workspace, LEAKER), "--run-dir", run_dir, "--headless", env=env)
    assert result.returncode == 3, result.stderr
    status = run_cli("status", run_dir, "--json", env=env)
    human = run_cli("status", run_dir, env=env)
    outputs = {"stdout": result.stdout, "stderr": result.stderr, "status": status.stdout, "human": human.stdout}
    # The frozen session file is the user's own copy of their secret; everything phasegate wrote is checked.
    files = [p for p in run_dir.rglob("*") if p.is_file() and p.name != "session.toml"]
    assert {p.name for p in files} >= {"state.db", "CHECKPOINT.md", "leak.log"}
    assert any(p.name.startswith("INCIDENT-") for p in files)
    for secret in (FILE_SECRET, ENV_SECRET):
        leaks = [p for p in files if secret.encode() in p.read_bytes()]
        leaks += [name for name, text in outputs.items() if secret in text]
        assert not leaks, f"{secret[:4]}… leaked into {leaks}"
    assert "[REDACTED:SERVICE_TOKEN]" in status.stdout and "[REDACTED:HF_TOKEN]" in status.stdout
    metrics = json.loads(status.stdout)["metrics"]["leak"]
    assert list(metrics) == ["loss [REDACTED:SERVICE_TOKEN] [REDACTED:HF_TOKEN]"]


def test_the_journal_and_the_checkpoints_are_private(workspace):
    run_dir = workspace / "run"
    result = run_cli("run", _session(workspace, MODES), "--run-dir", run_dir)
    assert result.returncode == 0, result.stderr
    seen_while_running = json.loads((run_dir / "artifacts" / "leak" / "modes.json").read_text())
    assert seen_while_running == {"": 0o600, "-wal": 0o600, "-shm": 0o600}
    written = [run_dir / "CHECKPOINT.md", *(run_dir / "checkpoints").glob("*.md")]
    assert len(written) >= 2
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == {p.name: 0o600 for p in written}


def test_a_redactor_learns_the_secret_values_of_env_tables():
    redactor = Redactor({}, extra=[{"HF_TOKEN": "abcdefgh123", "MODE": "verbose-mode"}, {"DB_PASSWORD": "pw-987654"}])
    text = redactor.redact("abcdefgh123 and pw-987654 in verbose-mode")
    assert text == "[REDACTED:HF_TOKEN] and [REDACTED:DB_PASSWORD] in verbose-mode"


ECHO = '''
import json, os, sys
events = os.fdopen(int(os.environ["PHASEGATE_EVENTS_FD"]), "w", buffering=1)
said = " ".join(sys.argv[1:]) + " " + os.environ["PHASEGATE_PARAMS"]
events.write(json.dumps({"type": "log", "message": said}) + "\\n")
events.write(json.dumps({"type": "stop", "trigger": "echo", "summary": said, "evidence": {"said": said}}) + "\\n")
print(said)
sys.exit(3)
'''
# Plain values (no well-known format): only their place in the session file says they are secret.
OPTION_SECRETS = ("opt-value-123456", "eq-value-654321", "with-value-777777", "nested-value-888888")


def test_secret_options_and_with_tables_of_a_session_file_are_masked(workspace):
    (workspace / "phase.py").write_text(ECHO)
    run = [sys.executable, "phase.py", "--token", OPTION_SECRETS[0], f"--api-key={OPTION_SECRETS[1]}"]
    (workspace / "s.toml").write_text(
        f'[session]\nname = "options"\n[[phases]]\nid = "echo"\nrun = {json.dumps(run)}\n'
        f'[phases.with]\nhf_token = "{OPTION_SECRETS[2]}"\nstore = {{ db_password = "{OPTION_SECRETS[3]}" }}\n')
    run_dir = workspace / "run"
    result = run_cli("run", workspace / "s.toml", "--run-dir", run_dir, "--headless")
    assert result.returncode == 3, result.stderr
    status = run_cli("status", run_dir, "--json")
    files = [p for p in run_dir.rglob("*") if p.is_file() and p.name != "session.toml"]
    assert any(p.name.startswith("INCIDENT-") for p in files)
    for secret in OPTION_SECRETS:
        leaks = [p.name for p in files if secret.encode() in p.read_bytes()]
        leaks += [name for name, text in {"stdout": result.stdout, "stderr": result.stderr,
                                          "status": status.stdout}.items() if secret in text]
        assert not leaks, f"{secret} leaked into {leaks}"
    log = (run_dir / "logs" / "echo.log").read_text()
    assert "--token [REDACTED:token] --api-key=[REDACTED:api-key]" in log
    assert "[REDACTED:hf_token]" in log and "[REDACTED:db_password]" in log


def test_a_redactor_learns_secret_options_and_nested_tables():
    redactor = Redactor({}, extra=[{"store": {"db_password": "pw-987654"}, "list": [{"api_key": "k-123456"}]}],
                        argvs=[["run", "--token", "t-123456", "--api-key=a-123456", "--tokens", "-v", "--out", "o-1234567"]])
    assert redactor.redact("pw-987654 k-123456 t-123456 a-123456 o-1234567") == (
        "[REDACTED:db_password] [REDACTED:api_key] [REDACTED:token] [REDACTED:api-key] o-1234567")
