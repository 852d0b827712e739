"""A damaged journal is reported, never silently restarted, and recoverable; a full disk stops safely."""

from __future__ import annotations

import os

import yaml

from tests.conftest import run_cli, session_toml, status_json

PHASES = ["a", "b", "c"]


def completed_run(workspace):
    (workspace / "s.toml").write_text(session_toml("j", PHASES))
    run_dir = workspace / "run"
    env = {**os.environ, "PHASE_EXIT_C": "1"}  # c fails: a and b are done, c is what is left
    assert run_cli("run", workspace / "s.toml", "--run-dir", run_dir, env=env).returncode == 3
    return run_dir


def test_truncated_journal_is_a_clear_error_and_recoverable(workspace):
    run_dir = completed_run(workspace)
    db = run_dir / "state.db"
    db.write_bytes(db.read_bytes()[: 4096])  # cut short, as a crash of a copy or a full disk might leave it
    for wal in run_dir.glob("state.db-*"):
        wal.unlink()
    status = run_cli("status", run_dir)
    assert status.returncode == 2
    assert str(db) in status.stderr and f"phasegate recover {run_dir}" in status.stderr
    resume = run_cli("resume", run_dir)
    assert resume.returncode == 2 and (workspace / "ledger.txt").read_text().count("start a") == 1  # nothing restarted

    listing = run_cli("recover", run_dir)
    assert listing.returncode == 0, listing.stderr
    assert "[ok     ] a: artifacts/a/marker.txt" in listing.stdout and "recoverable: a, b" in listing.stdout
    target = workspace / "recovered"
    assert run_cli("recover", run_dir, "--to", target).returncode == 0
    assert run_cli("resume", target).returncode == 0
    ledger = (workspace / "ledger.txt").read_text().split("\n")
    assert ledger.count("start a 1") == 1 and ledger.count("start b 1") == 1  # recovered phases did not run again
    assert status_json(target)["state"] == "completed"


def test_changed_artifact_is_not_recovered(workspace):
    run_dir = completed_run(workspace)
    (run_dir / "artifacts" / "b" / "marker.txt").write_text("tampered\n")
    (run_dir / "state.db").write_bytes(b"\0" * 8192)
    listing = run_cli("recover", run_dir)
    assert "[changed] b" in listing.stdout and "recoverable: a\n" in listing.stdout


def test_disk_full_stops_safely_with_the_report_elsewhere(workspace, tmp_path):
    (workspace / "s.toml").write_text(session_toml("full", PHASES))
    run_dir = workspace / "run"
    fallback = tmp_path / "fallback"
    # session.toml is write 1; phase a's start writes artifacts.json and CHECKPOINT.md, its end those two and its
    # numbered copy, phase b's start CHECKPOINT.md: write 8 is during phase b's checkpoint at its end.
    env = {**os.environ, "PHASEGATE_FAULT": "enospc:8", "PHASEGATE_FALLBACK_DIR": str(fallback)}
    result = run_cli("run", workspace / "s.toml", "--run-dir", run_dir, env=env)
    assert result.returncode == 3
    assert "no space left on device" in result.stderr and "Completed results are intact" in result.stderr
    reports = list((fallback / "phasegate-incidents").glob("INCIDENT-*.md"))
    assert len(reports) == 1 and "disk_full" in reports[0].read_text()
    hidden = [p for p in run_dir.rglob(".*") if p.suffix == ".tmp"]
    assert hidden == []  # no half-written file left behind
    front = yaml.safe_load((run_dir / "CHECKPOINT.md").read_text().split("---")[1])
    assert front["completed_phases"] == ["a"]  # the last good checkpoint is intact
    assert run_cli("resume", run_dir).returncode == 0
    assert (workspace / "ledger.txt").read_text().count("start a") == 1
    assert status_json(run_dir)["state"] == "completed"
