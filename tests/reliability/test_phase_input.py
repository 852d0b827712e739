"""What a phase sends cannot crash, flood or trick the controller: bad events, floods, artifacts outside, changed outputs."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from phasegate.journal.intake import MESSAGE_BURST, MESSAGES_PER_S, Allowance
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
    listed_file = workspace / "run" / yaml.safe_load(checkpoint.read_text().split("---", 2)[1])["artifacts"]["list"]
    records = json.loads(listed_file.read_text())
    listed_file.write_text(json.dumps([*records, {"phase": "first", "path": "/etc/passwd", "sha256": "0" * 64}]))
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
    assert run_cli("resume", workspace / "run", "--retry").returncode == 0


VALID_FLOOD = '''
import json, os
events = os.fdopen(int(os.environ["PHASEGATE_EVENTS_FD"]), "w", buffering=1 << 16)
send = lambda **event: events.write(json.dumps(event) + "\\n")
for i in range(20000):
    send(type="log", message=f"line {i}")
    send(type="metric", name="loss", value=float(i))
    send(type="progress", done=i + 1, total=i + 1)  # done == total once slipped past the throttle
    send(type="heartbeat")
for i in range(3000):
    send(type="metric", name=f"m{i}", value=1.0)
    send(type="stop", trigger="noise", summary="s" * 1500, evidence={"k": "v" * 1500})
events.flush()
'''


def test_floods_of_valid_events_are_capped_throttled_and_counted(workspace):
    (workspace / "flood.py").write_text(VALID_FLOOD)
    (workspace / "s.toml").write_text(f'[session]\nname = "valid"\n[[phases]]\nid = "send"\n'
                                      f'run = ["{sys.executable}", "flood.py"]\n')
    result = run_cli("run", workspace / "s.toml", "--run-dir", workspace / "run", timeout=300)
    assert result.returncode == 0, result.stderr
    journal = workspace / "run" / "state.db"
    assert journal.stat().st_size < 2_000_000  # about 12 MB of events were sent
    status = status_json(workspace / "run")
    metrics = status["metrics"]["send"]
    assert metrics["loss"] == 19999.0  # throttled, never stale: the latest value is kept
    assert len(metrics) == 1000  # distinct names past the limit are counted, not kept
    assert status["phases"][0]["progress"] == [20000, 20000]
    # Past their burst, log lines and stop requests are kept at a steady rate while the phase runs.
    trickle = math.ceil(status["phases"][0]["duration_s"] * MESSAGES_PER_S) + 1
    messages_dropped, names_dropped = 20000 + 3000 - MESSAGE_BURST - trickle, 3001 - 1000
    assert status["input_warnings"]["send"]["dropped"] >= messages_dropped + names_dropped
    assert "past the journal's limits per attempt" in result.stderr


NOT_UNICODE = r'''
import os, sys
events = int(os.environ["PHASEGATE_EVENTS_FD"])
os.write(events, b'{"type": "log", "message": "lone \\ud800 surrogate"}\n')
os.write(events, b'{"type": "log", "message": "\\u001b[2J\\u001b[1A\\u2713 session completed\\nforged"}\n')
os.write(events, b'{"type": "stop", "trigger": "t", "summary": "sum \\udc00", "evidence": {"k": "\\ud800"}}\n')
open(os.environ["PHASEGATE_ARTIFACTS"].encode() + b"/caf\xe9.txt", "w").write("x")
sys.exit(int(sys.argv[1]))
'''


@pytest.mark.parametrize("exit_code", [0, 3])
def test_text_that_is_not_unicode_or_moves_the_cursor_is_never_a_crash(workspace, exit_code):
    (workspace / "p.py").write_text(NOT_UNICODE)
    (workspace / "s.toml").write_text(f'[session]\nname = "text"\n[[phases]]\nid = "p"\n'
                                      f'run = ["{sys.executable}", "p.py", "{exit_code}"]\n')
    result = run_cli("run", workspace / "s.toml", "--run-dir", workspace / "run")
    assert result.returncode == exit_code, result.stderr  # completed, or the early stop: never an internal error
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    lines = result.stderr.splitlines()
    assert not any(line.startswith("forged") for line in lines)  # a phase's text stays on its own line
    status = status_json(workspace / "run")
    assert status["artifacts"] == []  # the file named in bytes that are not UTF-8 is refused, not a crash
    # Two lone surrogates refused; the file name too when the phase succeeded (only then are outputs read).
    assert status["input_warnings"]["p"]["warnings"] == (3 if exit_code == 0 else 2)
    assert status["state"] == ("completed" if exit_code == 0 else "stopped")
    assert run_cli("status", workspace / "run").returncode == 0


FOLDER_MOVES = {
    "folder_link": "shutil.rmtree(A); os.symlink(OUT, A)",
    "artifacts_link": "shutil.move(os.path.dirname(A), OUT + '-moved'); os.symlink(OUT + '-moved', os.path.dirname(A))",
    "folder_removed": "shutil.rmtree(A)",
    "folder_is_a_file": "shutil.rmtree(A); open(A, 'w').write('x')",
    "hard_link_out": "os.link(os.path.join(OUT, 'secret.txt'), os.path.join(A, 'shared.txt'))",
}
MOVER = '''
import os, shutil, sys
A, OUT = os.environ["PHASEGATE_ARTIFACTS"], sys.argv[1]
if os.environ["PHASEGATE_ATTEMPT"] == "1":
    {move}
    sys.exit(int(sys.argv[2]))
open(os.path.join(A, "ok.txt"), "w").write("ok")
'''


@pytest.mark.parametrize("move", sorted(FOLDER_MOVES))
@pytest.mark.parametrize("exit_code", [0, 1])
def test_a_phase_that_moves_or_links_its_artifact_folder_is_never_followed(workspace, move, exit_code):
    outside = workspace / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    (workspace / "p.py").write_text(MOVER.format(move=FOLDER_MOVES[move]))
    (workspace / "s.toml").write_text(f'[session]\nname = "moves"\n[[phases]]\nid = "p"\nretries = 1\n'
                                      f'run = ["{sys.executable}", "p.py", "{outside}", "{exit_code}"]\n')
    result = run_cli("run", workspace / "s.toml", "--run-dir", workspace / "run")
    assert result.returncode == 0, result.stderr  # exit 1: the retry starts from a clean, real folder
    status = status_json(workspace / "run")
    expected = [] if exit_code == 0 else ["artifacts/p/ok.txt"]
    assert [a["path"] for a in status["artifacts"]] == expected  # nothing outside was read or recorded
    assert (outside / "secret.txt").read_text() == "top secret\n"  # nor removed through a link
    if exit_code == 0:
        assert status["input_warnings"]["p"]["warnings"] == 1


def test_resume_refuses_a_completed_artifact_folder_replaced_by_a_link(workspace):
    (workspace / "s.toml").write_text(session_toml("relinked", ["first", "second"]))
    stopped = run_cli("run", workspace / "s.toml", "--run-dir", workspace / "run",
                      env={**os.environ, "PHASE_EXIT_SECOND": "1"})
    assert stopped.returncode == 3
    folder = workspace / "run" / "artifacts" / "first"
    copy = workspace / "copy"
    shutil.copytree(folder, copy)  # the same content, outside the run folder
    shutil.rmtree(folder)
    folder.symlink_to(copy)
    relinked = run_cli("resume", workspace / "run")
    assert relinked.returncode == 2, relinked.stderr
    assert "artifacts/first/marker.txt (first): outside its phase's artifact folder" in relinked.stderr

    folder.unlink()
    shutil.copytree(copy, folder)
    marker = folder / "marker.txt"
    marker.unlink()
    os.mkfifo(marker)  # never opened for a read that waits for a writer
    fifo = run_cli("resume", workspace / "run", timeout=30)
    assert fifo.returncode == 2 and "artifacts/first/marker.txt (first)" in fifo.stderr


def test_a_steady_trickle_past_the_burst_is_kept_while_a_flood_is_cut():
    now = [0.0]
    allowance = Allowance(burst=3, per_s=2.0, clock=lambda: now[0])
    assert [allowance.take(("p", 1)) for _ in range(5)] == [True, True, True, False, False]
    now[0] += 0.5  # one event's worth refilled
    assert [allowance.take(("p", 1)) for _ in range(2)] == [True, False]
    assert allowance.take(("q", 1))  # another attempt has its own burst
    now[0] += 3600  # an hour later: the burst again, never more
    assert [allowance.take(("p", 1)) for _ in range(4)] == [True, True, True, False]
