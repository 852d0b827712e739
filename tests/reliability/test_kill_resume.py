"""kill -9 of the controller at random moments, then resume: always the same final state, no phase run twice."""

import os
import random
import signal
import sqlite3
import subprocess
import sys

from tests.conftest import run_cli, session_toml, status_json

PHASES = ["p1", "p2", "p3", "p4", "p5"]
ITERATIONS = 20


def start(args, env):
    return subprocess.Popen([sys.executable, "-m", "phasegate", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_with_kills(session, run_dir, rng, env):
    """Start the run, kill -9 it at random moments a few times, then let a resume finish it."""
    kills = 0
    proc = start(["run", session, "--run-dir", run_dir], env)
    for _ in range(rng.randint(1, 3)):
        try:
            proc.wait(timeout=rng.uniform(0.05, 1.2))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        if proc.returncode == 0:
            return kills
        # killed before the run folder existed: nothing to resume, so start it again
        proc = start(["resume", run_dir] if run_dir.exists() else ["run", session, "--run-dir", run_dir], env)
    assert proc.wait(timeout=120) == 0
    return kills


def attempts(run_dir):
    conn = sqlite3.connect(run_dir / "state.db")
    rows = conn.execute("SELECT phase, attempt, state FROM attempts").fetchall()
    conn.close()
    return rows


def check_exactly_once(workspace, run_dir):
    lines = [line.split() for line in (workspace / "ledger.txt").read_text().splitlines()]
    rows = attempts(run_dir)
    for phase in PHASES:
        passed = [a for p, a, s in rows if p == phase and s == "passed"]
        assert len(passed) == 1, f"{phase}: passed attempts {passed}"
        final = passed[0]
        # the committed attempt ran to its end exactly once, and nothing of the phase ran after it
        assert lines.count(["start", phase, str(final)]) == 1 and lines.count(["end", phase, str(final)]) == 1
        assert all(int(a) <= final for what, p, a in lines if p == phase)
        assert all(s == "discarded" for p, a, s in rows if p == phase and a != final)


def test_kill_minus_nine_anywhere_then_resume(workspace, tmp_path):
    env = {**os.environ, "PHASE_SLEEP": "0.03"}
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "phase.py").write_text((workspace / "phase.py").read_text())
    (reference / "s.toml").write_text(session_toml("kill", PHASES))
    assert run_cli("run", reference / "s.toml", "--run-dir", reference / "run", env=env).returncode == 0
    expected = {(a["path"], a["sha256"]) for a in status_json(reference / "run")["artifacts"]}

    rng = random.Random(20261123)
    total_kills = 0
    for iteration in range(ITERATIONS):
        folder = tmp_path / f"it{iteration}"
        folder.mkdir()
        (folder / "phase.py").write_text((workspace / "phase.py").read_text())
        (folder / "s.toml").write_text(session_toml("kill", PHASES))
        total_kills += run_with_kills(folder / "s.toml", folder / "run", rng, env)
        status = status_json(folder / "run")
        assert status["state"] == "completed"
        assert {(a["path"], a["sha256"]) for a in status["artifacts"]} == expected
        check_exactly_once(folder, folder / "run")
    assert total_kills >= ITERATIONS  # the test really killed controllers mid-run
