"""Early stops with incident reports: OOM, stall, budget, GPU memory, A/B discrepancy; nothing completed is lost."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

from tests.conftest import run_cli, status_json

FIRST = f'[[phases]]\nid = "first"\nrun = ["{sys.executable}", "phase.py", "{{session_dir}}/ledger.txt"]\n\n'


def py(code: str) -> str:
    return json.dumps([sys.executable, "-c", code])


def run_session(workspace, session_extra: str, second: str, env: dict | None = None):
    text = f'[session]\nname = "stops"\n{session_extra}\n{FIRST}[[phases]]\nid = "second"\nrun = {second}\n'
    (workspace / "s.toml").write_text(text)
    result = run_cli("run", workspace / "s.toml", "--run-dir", workspace / "run", env={**os.environ, **(env or {})})
    status = status_json(workspace / "run")
    report = Path(status["incident"]).read_text() if status["incident"] else ""
    front = yaml.safe_load(report.split("---")[1]) if report else {}
    return result, status, report, front


def assert_first_phase_kept(status, workspace):
    assert status["phases"][0]["state"] == "passed"
    assert (workspace / "run" / "artifacts" / "first" / "marker.txt").exists()
    assert any(a["path"] == "artifacts/first/marker.txt" for a in status["artifacts"])


def test_cuda_oom_traceback_stops_early(workspace):
    oom = ("import sys; print('Traceback (most recent call last):'); "
           "print('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB', file=sys.stderr); sys.exit(1)")
    result, status, report, front = run_session(workspace, "", py(oom) + "\nretries = 3")
    assert result.returncode == 3 and front["trigger"] == "oom"
    assert status["phases"][1]["attempts"] == 1  # never retried into the same wall
    assert "CUDA out of memory" in report and "## Recovery" in report
    assert_first_phase_kept(status, workspace)


def test_a_phase_that_stops_heartbeating_is_a_stall(workspace):
    silent = "import time; time.sleep(60)"
    result, status, report, front = run_session(workspace, "stall_timeout_s = 1", py(silent))
    assert result.returncode == 3 and front["trigger"] == "stall"
    assert "silent_s" in report
    assert_first_phase_kept(status, workspace)


def test_heartbeats_keep_a_phase_alive(workspace):
    beating = ("import json, os, time\nf = os.fdopen(int(os.environ['PHASEGATE_EVENTS_FD']), 'w', buffering=1)\n"
               "for _ in range(8):\n    f.write(json.dumps(dict(type='heartbeat')) + chr(10)); time.sleep(0.25)")
    result, status, _, _ = run_session(workspace, "stall_timeout_s = 1", py(beating))
    assert result.returncode == 0 and status["state"] == "completed"


def test_budget_runs_out_mid_phase(workspace):
    slow = "import time; time.sleep(60)"
    result, status, report, front = run_session(workspace, "budget_usd = 2.0\ngpu_hourly_usd = 3600.0", py(slow))
    assert result.returncode == 3 and front["trigger"] == "budget_exhausted"
    assert 2.0 <= status["budget"]["spent_usd"] < 6.0 and status["budget"]["exhausted"]
    assert "Budget at the stop" in report and "Spent $" in report
    db_events = run_cli("status", workspace / "run", "--json")
    assert db_events.returncode == 0
    assert_first_phase_kept(status, workspace)


def test_fake_nvml_at_99_percent_memory_is_an_oom(workspace, tmp_path):
    script = tmp_path / "gpu.json"
    script.write_text(json.dumps([{"name": "NVIDIA H100 80GB HBM3", "mem_used_mb": 40000, "mem_total_mb": 81559,
                                   "util_pct": 50, "temp_c": 60, "power_w": 300},
                                  {"name": "NVIDIA H100 80GB HBM3", "mem_used_mb": 80800, "mem_total_mb": 81559,
                                   "util_pct": 100, "temp_c": 80, "power_w": 690}]))
    slow = "import time; time.sleep(60)"
    result, status, report, front = run_session(workspace, "oom_samples = 3", py(slow),
                                                env={"PHASEGATE_GPU_READER": f"fake:{script}"})
    assert result.returncode == 3 and front["trigger"] == "oom"
    assert "samples_at_or_above" in report and "peak 80800 MiB" in report and "█" in report
    assert status["budget"]["gpu_hourly_usd"] == 2.99  # priced from the GPU NVML reported, via the table
    assert_first_phase_kept(status, workspace)


def test_ab_discrepancy_above_two_percent_stops(workspace):
    emit = ("import json, os, time\nf = os.fdopen(int(os.environ['PHASEGATE_EVENTS_FD']), 'w', buffering=1)\n"
            "f.write(json.dumps(dict(type='metric', name='ab_discrepancy', value=0.035)) + chr(10)); time.sleep(30)")
    result, status, report, front = run_session(workspace, "", py(emit))
    assert result.returncode == 3 and front["trigger"] == "ab_discrepancy"
    assert "3.500%" in status["reason"]


def test_budget_gate_refuses_a_phase_that_would_not_fit(workspace):
    text = ('[session]\nname = "gate"\nbudget_usd = 10.0\ngpu_hourly_usd = 2.0\n\n' + FIRST
            + '[[phases]]\nid = "scale"\nrun = ["true"]\nestimate_min = 600\n'
            '[[phases.pre_gates]]\nkind = "budget"\n')
    (workspace / "s.toml").write_text(text)
    result = run_cli("run", workspace / "s.toml", "--run-dir", workspace / "run")
    assert result.returncode == 3
    status = status_json(workspace / "run")
    gate = status["gates"][-1]
    assert gate["status"] == "fail" and "projected $20.00 exceeds the $" in gate["summary"] and "left by $" in gate["summary"]
    assert status["phases"][1]["attempts"] == 0  # the expensive phase never started
