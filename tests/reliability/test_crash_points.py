"""Every named crash point, then resume: the same final state, each completed phase once, each review billed once."""

from __future__ import annotations

import sqlite3
import sys

import pytest

from phasegate.floor.faults import CRASH_EXIT_CODE, CRASH_POINTS
from tests.conftest import run_cli, status_json
from tests.reviews.conftest import fakes  # noqa: F401  (fixture: fake reviewer CLIs on PATH)

PHASES = ["p1", "p2", "p3"]
REVIEW = '''
[[phases.gates]]
id = "review"
kind = "review"
reviewer = "critic"
question = "Go on?"
'''


def session_text() -> str:
    out = ['[session]\nname = "crash"\n\n[reviewers.critic]\npreset = "claude"\ntimeout_s = 20\n']
    for phase in PHASES:
        out.append(f'[[phases]]\nid = "{phase}"\nrun = ["{sys.executable}", "phase.py", "{{session_dir}}/ledger.txt"]\n'
                   + (REVIEW if phase == "p2" else ""))
    return "\n".join(out)


CASES = [(point, 1) for point in CRASH_POINTS] + [("before_rename", 3), ("after_rename", 4), ("after_spawn", 3)]


@pytest.mark.parametrize("point,nth", CASES, ids=[f"{p}:{n}" for p, n in CASES])
def test_crash_point_then_resume(fakes, workspace, point, nth):  # noqa: F811
    fakes.scenario(mode="ok", decision="SCALE")
    (fakes.repo / "phase.py").write_text((workspace / "phase.py").read_text())
    (fakes.repo / "s.toml").write_text(session_text())
    run_dir = fakes.runs / "run"
    crashed = run_cli("run", fakes.repo / "s.toml", "--run-dir", run_dir,
                      env={**fakes.env, "PHASEGATE_FAULT": f"crash_at:{point}:{nth}"})
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr  # the point was really reached
    again = (run_cli("resume", run_dir, env=fakes.env) if run_dir.exists()
             else run_cli("run", fakes.repo / "s.toml", "--run-dir", run_dir, env=fakes.env))
    assert again.returncode == 0, again.stderr
    status = status_json(run_dir)
    assert status["state"] == "completed"
    assert {a["path"] for a in status["artifacts"]} == {f"artifacts/{p}/marker.txt" for p in PHASES}
    lines = [line.split() for line in (fakes.repo / "ledger.txt").read_text().splitlines()]
    conn = sqlite3.connect(run_dir / "state.db")
    for phase in PHASES:
        (final,) = conn.execute("SELECT attempt FROM attempts WHERE phase=? AND state='passed'", (phase,)).fetchone()
        assert lines.count(["end", phase, str(final)]) == 1
        assert all(int(a) <= final for _, p, a in lines if p == phase)
    assert len(fakes.calls()) == 1, "the reviewer must be billed exactly once"
    assert conn.execute("SELECT COUNT(*) FROM ledger WHERE kind='review'").fetchone()[0] == 1
