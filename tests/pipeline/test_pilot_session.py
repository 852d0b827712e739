"""The Stage 1 pilot as built-in phases inside a real session: load check, baseline, pilot, QC gate."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli, status_json

QC_GATE = '''
[[phases.gates]]
id = "pilot-qc"
kind = "threshold"
file = "{artifacts}/qc_summary.json"
rules = ["runaway_rate < 0.05", "token_limit_rate < 0.10", "leakage_count == 0",
         "median_tokens < 40", "instruction_acceptance >= 0.5", "pair_acceptance >= 0.5"]
'''


def session(model: Path, phases: str) -> str:
    return f'[session]\nname = "pilot"\nseed = 7\n\n[model]\npath = "{model}"\n\n{phases}'


def test_pilot_session_runs_end_to_end_and_its_qc_gate_decides(tmp_path, tiny_model_dir):
    phases = ('[[phases]]\nid = "load"\nkind = "load_check"\n\n'
              '[[phases]]\nid = "baseline"\nkind = "baseline_eval"\n\n'
              '[[phases]]\nid = "pilot"\nkind = "generate"\n[phases.with]\ncount = 8\nbatch_size = 4\n'
              'max_new_tokens = 16\n' + QC_GATE)
    (tmp_path / "s.toml").write_text(session(tiny_model_dir, phases))
    assert run_cli("check", tmp_path / "s.toml").returncode == 0
    result = run_cli("run", tmp_path / "s.toml", "--run-dir", tmp_path / "run", timeout=300)
    status = status_json(tmp_path / "run")
    assert [p["state"] for p in status["phases"]][:2] == ["passed", "passed"]
    qc = json.loads((tmp_path / "run" / "artifacts" / "pilot" / "qc_summary.json").read_text())
    gate = next(g for g in status["gates"] if g["gate_id"] == "pilot-qc")
    # The gate decides from the real metrics of a random tiny model, whatever they are.
    expected_pass = all(r["passed"] for r in gate["evidence"]["rules"])
    assert gate["status"] == ("pass" if expected_pass else "fail")
    assert result.returncode == (0 if expected_pass else 3)
    assert {r["metric"] for r in gate["evidence"]["rules"]} <= set(qc)
    assert status["phases"][2]["progress"] is not None


def test_contaminated_model_stops_the_session_early_with_evidence(tmp_path, contaminated_model_dir):
    phases = ('[[phases]]\nid = "load"\nkind = "load_check"\nretries = 2\n\n'
              '[[phases]]\nid = "after"\nrun = ["true"]\n')
    (tmp_path / "s.toml").write_text(session(contaminated_model_dir, phases))
    result = run_cli("run", tmp_path / "s.toml", "--run-dir", tmp_path / "run", timeout=300)
    assert result.returncode == 3
    status = status_json(tmp_path / "run")
    assert status["phases"][0]["attempts"] == 1  # an early stop is never retried
    assert status["phases"][1]["state"] == "pending"
    assert "early stop (contamination)" in status["reason"]
    report = Path(status["incident"]).read_text()
    assert "trigger: contamination" in report and "special_id_hits" in report


def test_builtin_phase_without_model_table_is_a_spec_error(tmp_path):
    (tmp_path / "s.toml").write_text('[session]\nname = "x"\n\n[[phases]]\nid = "load"\nkind = "load_check"\n')
    result = run_cli("check", tmp_path / "s.toml")
    assert result.returncode == 2 and "no [model] table" in result.stderr
