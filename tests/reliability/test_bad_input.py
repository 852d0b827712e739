"""Bad input always gets exit 2 and a message that names what to fix: never a traceback, a hang or a quiet re-run."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import run_cli, session_toml, status_json


def session(tmp_path: Path, run: str, extra: str = "", phase_id: str = "p") -> Path:
    path = tmp_path / "s.toml"
    path.write_text(f'[session]\nname = "bad"\n\n[[phases]]\nid = "{phase_id}"\nrun = {run}\n{extra}')
    return path


def assert_clean_refusal(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "phasegate: error: " in result.stderr
    for needle in needles:
        assert needle in result.stderr


@pytest.mark.parametrize(("run", "extra", "phase_id", "needles"), [
    ('["true", "a\\u0000b"]', "", "p", ["line 6", "phases[0].run[1]", "NUL"]),
    ('["true"]', '[phases.env]\n"A=B" = "1"\n', "p", ["line 7", "phases[0].env", "'A=B'"]),
    ('["true"]', "", "a" * 300, ["line 5", "phases[0].id", "at most 64"]),
    ('["echo", "{artifacts:>9999999}"]', "", "p", ["line 6", "no format spec", "write {artifacts}"]),
    ('["."]', "", "p", ["line 6", "'.' is not a program"]),
    ('["true"]', "[phases.with]\nx = " + "[" * 600 + "]" * 600 + "\n", "p", ["nested too deeply"]),
    ('["true"]', "[phases.with]\nx = " + "[" * 40 + "]" * 40 + "\n", "p", ["line 8", "phases[0].with.x", "nested"]),
])
def test_session_that_check_passed_but_run_crashed_on_is_refused_by_both(tmp_path, run, extra, phase_id, needles):
    path = session(tmp_path, run, extra, phase_id)
    assert_clean_refusal(run_cli("check", path), str(path), *needles)
    assert_clean_refusal(run_cli("run", path, "--run-dir", tmp_path / "run"), *needles)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("program", ["pyhton3", "./script.sh"])
def test_program_that_cannot_start_is_refused_by_check_and_run_naming_the_phase(tmp_path, program):
    (tmp_path / "script.sh").write_text("#!/bin/sh\ntrue\n")  # not executable
    path = session(tmp_path, f'["{program}"]', phase_id="train")
    assert_clean_refusal(run_cli("check", path), "phases[0].run[0] (phase 'train')", f"program '{program}'")
    assert_clean_refusal(run_cli("run", path, "--run-dir", tmp_path / "run"), f"program '{program}'")
    assert not (tmp_path / "run").exists()  # refused before anything was made or spent


def test_a_script_the_kernel_cannot_execute_stops_with_exit_2_and_resumes_once_fixed(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("true\n")  # executable, but no `#!` line: exec fails with ENOEXEC
    script.chmod(0o755)
    path = session(tmp_path, '["./script.sh"]', phase_id="train")
    result = run_cli("run", path, "--run-dir", tmp_path / "run")
    assert_clean_refusal(result, "phase 'train' cannot start", "./script.sh")
    assert status_json(tmp_path / "run")["state"] == "stopped"
    script.write_text("#!/bin/sh\ntrue\n")
    assert run_cli("resume", tmp_path / "run").returncode == 0


def test_check_refuses_a_script_that_does_not_exist(tmp_path):
    check = run_cli("check", session(tmp_path, '["python3", "scripts/prepare.py", "{artifacts}/x.py"]'))
    assert check.returncode == 2
    assert "script 'scripts/prepare.py' does not exist" in check.stderr and "x.py" not in check.stderr


@pytest.mark.parametrize("run_dir", ["/dev/null/run", "/proc/run", "NAME" * 80])
def test_run_dir_that_cannot_be_made_is_exit_2(tmp_path, run_dir):
    target = run_dir if run_dir.startswith("/") else tmp_path / run_dir
    assert_clean_refusal(run_cli("run", session(tmp_path, '["true"]'), "--run-dir", target),
                         "cannot create the run folder", "pick another --run-dir")


def test_run_dir_name_too_long_for_the_file_system_is_exit_2_for_readers(tmp_path):
    for command in ("status", "resume", "stop"):
        extra = ["--reason", "x"] if command == "stop" else []
        assert_clean_refusal(run_cli(command, tmp_path / ("NAME" * 80), *extra), "File name too long")


def test_fifo_as_session_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / "s.toml"
    os.mkfifo(fifo)
    for command in (["check", fifo], ["run", fifo, "--run-dir", tmp_path / "run"]):
        assert_clean_refusal(run_cli(*command, timeout=30), "not a regular file (a FIFO)")


def test_fifo_in_a_policy_tree_fails_the_gate_instead_of_hanging(tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "ok.py").write_text("x = 1\n")
    os.mkfifo(tmp_path / "tree" / "pipe.py")
    path = session(tmp_path, '["true"]', '[[phases.gates]]\nkind = "policy"\nroot = "tree"\n'
                   'rules = [{kind = "no_call", function = "eval"}]\n')
    result = run_cli("run", path, "--run-dir", tmp_path / "run", timeout=60)
    assert result.returncode == 3, result.stderr
    gate = status_json(tmp_path / "run")["gates"][0]
    assert gate["status"] == "fail" and "pipe.py" in gate["summary"] and "not a regular file" in gate["summary"]



@pytest.mark.parametrize("gate", [
    'kind = "threshold"\nfile = "{session_dir}/metrics.json"\nrules = ["acc >= 0.5"]',
    'kind = "stat"\nfile = "{session_dir}/metrics.json"\ndirection = "improve"',
])
def test_fifo_or_deep_json_named_by_a_metrics_gate_fails_the_gate_instead_of_hanging(tmp_path, gate):
    os.mkfifo(tmp_path / "metrics.json")
    path = session(tmp_path, '["true"]', f"[[phases.gates]]\n{gate}\n")
    result = run_cli("run", path, "--run-dir", tmp_path / "run", timeout=60)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert "not a regular file" in status_json(tmp_path / "run")["gates"][0]["summary"]
    (tmp_path / "metrics.json").unlink()
    (tmp_path / "metrics.json").write_text("[" * 100000 + "]" * 100000)
    result = run_cli("run", path, "--run-dir", tmp_path / "run2", timeout=60)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert "nested too deep" in status_json(tmp_path / "run2")["gates"][0]["summary"]

def _file_size_limit(limit: int):
    def apply() -> None:  # as a full disk does: writes past the limit fail (EFBIG), the process lives on
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_while_the_journal_is_created_leaves_nothing_behind(tmp_path):
    path = session(tmp_path, '["true"]')
    result = subprocess.run([sys.executable, "-m", "phasegate", "run", str(path), "--run-dir", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=60, preexec_fn=_file_size_limit(16384))
    assert_clean_refusal(result, "cannot create the run folder", "cannot create the journal")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]  # no run folder, no hidden staging folder


def test_full_disk_while_the_session_file_is_frozen_leaves_nothing_behind(tmp_path):
    path = session(tmp_path, '["true"]')
    env = {**os.environ, "PHASEGATE_FAULT": "enospc:1"}  # the first durable write: the frozen session file
    assert_clean_refusal(run_cli("run", path, "--run-dir", tmp_path / "run", env=env), "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


def finished_run(workspace: Path, phases: list[str], env: dict | None = None) -> Path:
    (workspace / "s.toml").write_text(session_toml("j", phases))
    run_dir = workspace / "run"
    run_cli("run", workspace / "s.toml", "--run-dir", run_dir, env=env)
    return run_dir


@pytest.mark.parametrize(("damage", "needle"), [
    ("DROP TABLE ledger", "table 'ledger' is missing"),
    ("UPDATE phases SET state = 'bogus' WHERE id = 'a'", "'bogus'"),
    ("UPDATE run SET state = 'half-done'", "'half-done'"),
])
def test_damaged_journal_is_exit_2_for_every_reader(workspace, damage, needle):
    run_dir = finished_run(workspace, ["a"])
    conn = sqlite3.connect(run_dir / "state.db")
    conn.execute(damage)
    conn.commit()
    conn.close()
    for command in (["status", run_dir], ["status", run_dir, "--json"], ["resume", run_dir]):
        assert_clean_refusal(run_cli(*command), str(run_dir / "state.db"), needle, "phasegate recover")


def test_duplicate_gate_ids_are_refused_with_both_lines(tmp_path):
    gate = '[[phases.gates]]\nkind = "approval"\nid = "{}"\n'
    path = tmp_path / "s.toml"
    path.write_text('[session]\nname = "dup"\n\n[[phases]]\nid = "a"\nrun = ["true"]\n' + gate.format("check")
                    + '\n[[phases]]\nid = "b"\nrun = ["true"]\n' + gate.format("check"))
    for command in (["check", path], ["run", path, "--run-dir", tmp_path / "run"]):
        assert_clean_refusal(run_cli(*command), "line 16", "phases[1].gates[0].id", "'check'",
                             "phases[0].gates[0] (line 9)")
    # An explicit id may not take the id another gate gets by default either.
    path.write_text('[session]\nname = "dup"\n\n[[phases]]\nid = "a"\nrun = ["true"]\n'
                    '[[phases.gates]]\nkind = "approval"\n' + gate.format("a.approval"))
    assert_clean_refusal(run_cli("check", path), "'a.approval' is already used")


def test_placeholders_in_a_shell_script_are_quoted(tmp_path):
    canary = tmp_path / "pwned"
    path = session(tmp_path, '["sh", "-ec", "echo done > {artifacts}/out.txt"]')
    run_dir = tmp_path / f"r $(touch {canary}) x"
    result = run_cli("run", path, "--run-dir", run_dir)
    assert result.returncode == 0, result.stderr
    assert not canary.exists()
    assert (run_dir / "artifacts" / "p" / "out.txt").read_text() == "done\n"
    assert [a["path"] for a in status_json(run_dir)["artifacts"]] == ["artifacts/p/out.txt"]


@pytest.mark.parametrize("arg", ["print({'a':1})", "BEGIN { print 1 }"])
def test_literal_brace_error_says_how_to_escape_it(tmp_path, arg):
    assert_clean_refusal(run_cli("check", session(tmp_path, f'["true", "{arg}"]')),
                         "unknown placeholder", "written twice: {{ for {, }} for }")


def _corrupt_wal_after(db: Path, phase: str) -> None:
    """Corrupt the write-ahead log from the first commit that has `phase` passed: SQLite silently drops the rest."""
    wal_path = db.with_name(db.name + "-wal")
    wal = bytearray(wal_path.read_bytes())
    frame = 24 + int.from_bytes(wal[8:12], "big")
    frames = range((len(wal) - 32) // frame)
    commits = [32 + (i + 1) * frame for i in frames if int.from_bytes(wal[32 + i * frame + 4:32 + i * frame + 8], "big")]
    keep = 32
    for end in commits:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(db, Path(tmp) / "state.db")
            (Path(tmp) / "state.db-wal").write_bytes(wal[:end])
            conn = sqlite3.connect(Path(tmp) / "state.db")
            state = conn.execute("SELECT state FROM phases WHERE id = ?", (phase,)).fetchone()[0]
            conn.close()
        if state == "passed":
            break
        keep = end
    wal[keep + 24 + 100] ^= 0xFF  # a flipped bit in the next frame: its checksum, and every later one, fails
    wal_path.write_bytes(bytes(wal))
    db.with_name(db.name + "-shm").unlink(missing_ok=True)


def test_journal_that_lost_passed_phases_to_a_corrupt_wal_is_refused_not_rerun(workspace):
    # The controller dies once c has started: its last WAL frames are never checkpointed into state.db.
    run_dir = finished_run(workspace, ["a", "b", "c"], env={**os.environ, "PHASEGATE_FAULT": "crash_at:after_spawn:3"})
    assert (run_dir / "state.db-wal").exists()
    _corrupt_wal_after(run_dir / "state.db", "b")
    for command in (["resume", run_dir], ["status", run_dir]):
        assert_clean_refusal(run_cli(*command), str(run_dir / "state.db"), str(run_dir / "CHECKPOINT.md"),
                             "phase(s) b passed", f"phasegate recover {run_dir}")
    assert (workspace / "ledger.txt").read_text().count("start b") == 1  # b was not run again
    listing = run_cli("recover", run_dir)
    assert listing.returncode == 0 and "recoverable: a, b" in listing.stdout


# -- session files as editors save them ------------------------------------------------------------------
def test_a_session_file_that_is_not_utf8_is_refused_by_check_and_run_naming_the_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_bytes(b'[session]\nname = "bad"\n# caf\xe9\n\n[[phases]]\nid = "p"\nrun = ["true"]\n')
    for command in (["check", path], ["run", path, "--run-dir", tmp_path / "run"]):
        assert_clean_refusal(run_cli(*command), f"{path} line 3", "0xe9", "save it as UTF-8")
    assert not (tmp_path / "run").exists()


def test_a_session_file_with_a_byte_order_mark_runs_and_resumes(tmp_path):
    path = tmp_path / "s.toml"
    path.write_bytes(b'\xef\xbb\xbf[session]\nname = "bom"\n\n[[phases]]\nid = "p"\nrun = ["true"]\n'
                     b'[[phases.gates]]\nkind = "approval"\n')
    assert run_cli("check", path).returncode == 0
    assert run_cli("run", path, "--run-dir", tmp_path / "run").returncode == 4  # paused for the approval
    assert run_cli("approve", tmp_path / "run", "p.approval").returncode == 0
    resumed = run_cli("resume", tmp_path / "run")  # the frozen copy matches the journal's sha256
    assert resumed.returncode == 0, resumed.stderr


# -- run folders and journals that are not what they seem -----------------------------------------------
def test_a_loop_of_symbolic_links_as_the_run_folder_is_exit_2_for_every_command(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    path = session(tmp_path, '["true"]')
    for command in (["run", path, "--run-dir", tmp_path / "a" / "run"], ["resume", tmp_path / "a"],
                    ["status", tmp_path / "a"], ["approve", tmp_path / "a", "x"], ["recover", tmp_path / "a"],
                    ["stop", tmp_path / "a", "--reason", "r"], ["waive", tmp_path / "a", "x", "--reason", "r"]):
        assert_clean_refusal(run_cli(*command), "symbolic links form a loop")


def test_a_journal_linked_to_another_run_is_refused_and_left_untouched(workspace):
    run_dir = finished_run(workspace, ["a"])
    other = workspace / "other"
    other.mkdir()
    for name in ("session.toml", "artifacts"):
        os.symlink(run_dir / name, other / name)
    (other / "state.db").symlink_to(run_dir / "state.db")
    before = (run_dir / "state.db").read_bytes()
    assert_clean_refusal(run_cli("resume", other), str(other / "state.db"), "symbolic link")
    assert (run_dir / "state.db").read_bytes() == before


def test_a_write_ahead_log_copied_from_another_run_is_refused_and_never_applied(workspace):
    crash = {**os.environ, "PHASEGATE_FAULT": "crash_at:after_spawn:2"}
    (workspace / "s.toml").write_text(session_toml("j", ["a", "b"]))
    for name in ("ahead", "behind"):  # "behind" dies as a starts, "ahead" once b started: a passed in its log
        env = crash if name == "ahead" else {**os.environ, "PHASEGATE_FAULT": "crash_at:after_spawn:1"}
        run_cli("run", workspace / "s.toml", "--run-dir", workspace / name, env=env)
    (workspace / "behind" / "state.db-shm").unlink(missing_ok=True)
    shutil.copy(workspace / "ahead" / "state.db-wal", workspace / "behind" / "state.db-wal")
    ledger = (workspace / "ledger.txt").read_text()
    for command in (["resume", workspace / "behind"], ["status", workspace / "behind"]):  # refused again: not merged
        assert_clean_refusal(run_cli(*command), "state.db-wal", "belongs to run 'ahead'", "copied in from another run")
    assert (workspace / "ledger.txt").read_text() == ledger  # nothing ran


def test_an_empty_journal_says_it_was_cut_short(workspace):
    run_dir = finished_run(workspace, ["a"])
    (run_dir / "state.db").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (run_dir / f"state.db{suffix}").unlink(missing_ok=True)
    assert_clean_refusal(run_cli("resume", run_dir), str(run_dir / "state.db"), "empty", "phasegate recover")


def test_a_checkpoint_edited_to_claim_more_is_refused_until_it_is_deleted(workspace):
    run_dir = finished_run(workspace, ["a", "b"], env={**os.environ, "PHASEGATE_FAULT": "crash_at:after_spawn:2"})
    checkpoint = run_dir / "CHECKPOINT.md"
    text = checkpoint.read_text()
    checkpoint.write_text(text.replace("completed_phases:\n- a\n", "completed_phases:\n- a\n- nosuchphase\n"))
    assert run_cli("status", run_dir).returncode == 0  # a phase the session lacks was never the journal's
    checkpoint.write_text(text.replace("completed_phases:\n- a\n", "completed_phases:\n- a\n- b\n"))
    assert_clean_refusal(run_cli("resume", run_dir), "phase(s) b passed", "the checkpoint was edited",
                         "delete it and resume")
    checkpoint.unlink()
    assert run_cli("resume", run_dir).returncode == 0
    assert {p["id"]: p["state"] for p in status_json(run_dir)["phases"]} == {"a": "passed", "b": "passed"}


def test_an_operator_note_that_is_not_utf8_is_journaled_not_a_crash(tmp_path):
    path = session(tmp_path, '["true"]', '[[phases.gates]]\nkind = "approval"\n')
    assert run_cli("run", path, "--run-dir", tmp_path / "run").returncode == 4
    note = "looked at it \udcff"  # the byte 0xff, as Python decodes an argument that is not UTF-8
    approved = run_cli("approve", tmp_path / "run", "p.approval", "--note", note)
    assert approved.returncode == 0, approved.stderr
    resumed = run_cli("resume", tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr


# -- placeholders wherever a shell reads them ------------------------------------------------------------
@pytest.mark.parametrize("run", [
    ["sh", "-c", "echo done > '{artifacts}'/out.txt"],
    ["sh", "-c", 'echo done > "{artifacts}/out.txt"'],
    ["sh", "-c", "echo done > \"$(echo '{artifacts}')\"/out.txt"],
    ["env", "sh", "-c", "echo done > {artifacts}/out.txt"],
    ["/usr/bin/env", "LC_ALL=C", "bash", "-c", "echo done > {artifacts}/out.txt"],
    ["timeout", "30", "sh", "-ec", "echo done > {artifacts}/out.txt"],
], ids=["single-quoted", "double-quoted", "in-a-substitution", "env", "env-assignment", "timeout"])
def test_placeholders_stay_one_word_wherever_they_stand_in_a_shell_script(tmp_path, run):
    canary = tmp_path / "pwned"
    path = session(tmp_path, json.dumps(run))
    run_dir = tmp_path / f"r' $(touch {canary}) \"`touch {canary}`\" x"
    result = run_cli("run", path, "--run-dir", run_dir)
    assert result.returncode == 0, result.stderr
    assert not canary.exists()
    assert (run_dir / "artifacts" / "p" / "out.txt").read_text() == "done\n"

