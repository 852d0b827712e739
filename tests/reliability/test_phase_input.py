"""What a phase sends cannot crash, flood or trick the controller: bad events, floods, artifacts outside, changed outputs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

from tests.conftest import run_cli, session_toml, status_json

# Each line broke a run once (a traceback, a FAILED run, a journal or stdout that was not JSON).
MALFORMED = [
    '{"type": "progress", "done": null, "total": 3}',
    '{"type": "progress", "done": "5", "total": 3}',
    '{"type": "progress", "done": NaN, "total": 3}',
    '{"type": "progress", "done": 1e400, "total": 3}',
    '{"type": "progress", "done": 100000000000000000000000, "total": 3}',
    '{"type": "progress", "done": 1, "total": 3, "step": {"a": 1}}',
    '{"type": "metric", "name": "loss", "value": NaN}',
    '{"type": "metric", "name": "loss", "value": 1e400}',
    '{"type": "metric", "name": "", "value": 1}',
    '{"type": "artifact", "path": "/proc/self/status"}',
    '{"type": "stop", "trigger": "x", "evidence": [1, 2]}',
    '{"type": "mystery"}',
    '[1, 2]',
    'not json at all',
]

SENDER = '''
import json, os, sys
events = os.fdopen(int(os.environ["PHASEGATE_EVENTS_FD"]), "w", buffering=1)
for line in open(sys.argv[1]).read().splitlines():
    events.write(line + "\\n")
events.write(json.dumps({"type": "metric", "name": "after", "value": 2.0}) + "\\n")
open(os.path.join(os.environ["PHASEGATE_ARTIFACTS"], "out.txt"), "w").write("ok\\n")
'''


def strict_json(text: str):
    """Parse `text` as strict JSON: NaN and Infinity are not JSON."""
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def sender_session(workspace: Path, lines: list[str], name: str = "input") -> Path:
    (workspace / "send.py").write_text(SENDER)
    (workspace / "lines.txt").write_text("\n".join(lines) + "\n")
    text = (f'[session]\nname = "{name}"\n[[phases]]\nid = "send"\n'
            f'run = ["{sys.executable}", "send.py", "{{session_dir}}/lines.txt"]\n')
    (workspace / "s.toml").write_text(text)
    return workspace / "s.toml"


def test_malformed_events_become_warnings_and_the_phase_goes_on(workspace):
    session = sender_session(workspace, MALFORMED)
    result = run_cli("run", session, "--run-dir", workspace / "run", "--headless")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    events = [strict_json(line) for line in result.stdout.splitlines()]  # stdout stays strict JSON
    refused = [e for e in events if e["type"] in ("invalid_event", "artifact_refused")]
    assert len(refused) == len(MALFORMED) and all(e["error"] for e in refused)
    status = strict_json(run_cli("status", workspace / "run", "--json").stdout)
    assert status["state"] == "completed"
    assert status["metrics"]["send"] == {"after": 2.0}  # the good event after the bad ones still counts
    assert status["input_warnings"]["send"] == {"warnings": len(MALFORMED), "dropped": 0}
    assert [a["path"] for a in status["artifacts"]] == ["artifacts/send/out.txt"]
    assert "Refused phase input" in (workspace / "run" / "CHECKPOINT.md").read_text()
    again = run_cli("resume", workspace / "run", "--headless")
    assert again.returncode == 0, again.stderr


def test_a_flood_of_unknown_events_is_capped_and_counted(workspace):
    flood = [json.dumps({"type": "mystery", "i": i, "pad": "x" * 10_000}) for i in range(3000)]
    session = sender_session(workspace, flood)
    result = run_cli("run", session, "--run-dir", workspace / "run")
    assert result.returncode == 0, result.stderr
    journal = workspace / "run" / "state.db"
    assert journal.stat().st_size < 2_000_000  # 30 MB were sent
    status = status_json(workspace / "run")
    counts = status["input_warnings"]["send"]
    assert counts["warnings"] + counts["dropped"] == len(flood) and counts["dropped"] > 0
    assert f"{counts['dropped']} more refused event(s) of attempt 1 dropped" in result.stderr
    assert f"{counts['dropped']} more dropped" in (workspace / "run" / "CHECKPOINT.md").read_text()


LINKER = '''
import json, os
events = os.fdopen(int(os.environ["PHASEGATE_EVENTS_FD"]), "w", buffering=1)
folder = os.environ["PHASEGATE_ARTIFACTS"]
open(os.path.join(folder, "real.txt"), "w").write("real\\n")
os.symlink(os.path.abspath("secret.txt"), os.path.join(folder, "escape.txt"))
os.symlink(os.path.join(folder, "real.txt"), os.path.join(folder, "alias.txt"))
for path in ["/etc/passwd", os.path.join(folder, "..", "..", "session.toml"), os.path.abspath("secret.txt")]:
    events.write(json.dumps({"type": "artifact", "path": path}) + "\\n")
'''


def test_artifacts_are_files_inside_the_phase_folder(workspace):
    (workspace / "secret.txt").write_text("top secret\n")
    (workspace / "link.py").write_text(LINKER)
    (workspace / "s.toml").write_text(f'[session]\nname = "links"\n[[phases]]\nid = "make"\n'
                                      f'run = ["{sys.executable}", "link.py"]\n')
    result = run_cli("run", workspace / "s.toml", "--run-dir", workspace / "run")
    assert result.returncode == 0, result.stderr
    status = status_json(workspace / "run")
    assert sorted(a["path"] for a in status["artifacts"]) == ["artifacts/make/real.txt"]
    assert status["input_warnings"]["make"]["warnings"] == 4  # three declared outside, one link leading out
    checkpoint = (workspace / "run" / "CHECKPOINT.md").read_text()
    assert "/etc/passwd" not in checkpoint and "secret.txt" not in checkpoint

    recovered = run_cli("recover", workspace / "run", "--to", workspace / "again")
    assert recovered.returncode == 0, recovered.stderr
    copied = [p for p in (workspace / "again" / "artifacts").rglob("*") if p.is_file()]
    assert [p.name for p in copied] == ["real.txt"]  # the link out was neither followed nor copied


def test_recover_never_reads_an_artifact_a_checkpoint_names_outside_its_folder(workspace):
    (workspace / "s.toml").write_text(session_toml("tampered", ["first"]))
    assert run_cli("run", workspace / "s.toml", "--run-dir", workspace / "run").returncode == 0
    checkpoint = workspace / "run" / "CHECKPOINT.md"
    _, front, body = checkpoint.read_text().split("---", 2)
    data = yaml.safe_load(front)
    data["artifacts"].append({"phase": "first", "path": "/etc/passwd", "sha256": "0" * 64})
    checkpoint.write_text("---\n" + yaml.safe_dump(data) + "---" + body)
    for old in (workspace / "run" / "checkpoints").glob("*.md"):
        old.unlink()
    listed = run_cli("recover", workspace / "run")
    assert listed.returncode == 0, listed.stderr
    assert "[refused] first: /etc/passwd" in listed.stdout
    assert "recoverable: nothing" in listed.stdout


def test_resume_refuses_a_completed_phase_whose_artifact_changed(workspace):
    (workspace / "s.toml").write_text(session_toml("verify", ["first", "second"]))
    stopped = run_cli("run", workspace / "s.toml", "--run-dir", workspace / "run",
                      env={**os.environ, "PHASE_EXIT_SECOND": "1"})
    assert stopped.returncode == 3
    marker = workspace / "run" / "artifacts" / "first" / "marker.txt"
    original = marker.read_text()

    marker.unlink()
    deleted = run_cli("resume", workspace / "run")
    assert deleted.returncode == 2, deleted.stderr
    assert "artifacts/first/marker.txt (first): deleted" in deleted.stderr
    assert f"phasegate recover {workspace / 'run'}" in deleted.stderr

    marker.write_text("tampered\n")
    changed = run_cli("resume", workspace / "run")
    assert changed.returncode == 2 and "changed since it was recorded" in changed.stderr
    assert (workspace / "ledger.txt").read_text().count("start second") == 1  # nothing ran meanwhile

    marker.write_text(original)
    assert run_cli("resume", workspace / "run").returncode == 0
