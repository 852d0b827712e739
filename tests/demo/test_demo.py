"""`phasegate demo`: the whole session end to end, and each injected fault ending as documented."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from phasegate.demo.run import FAULTS, prepare_demo, run_demo
from tests.conftest import run_cli, status_json
from tests.tui.test_tmux import Pane

FULL_DEMO_BOUND_S = 600  # 3 minutes on an idle 2-core machine; shared CI machines are slower


def incident(status: dict) -> tuple[dict, str]:
    """The incident report's front matter and text."""
    text = Path(status["incident"]).read_text()
    return yaml.safe_load(text.split("---")[1]), text


def test_the_full_demo_runs_headless_and_ends_as_its_gates_decide(tmp_path, demo_model, demo_cache):
    env = {**os.environ, "PHASEGATE_CACHE": str(demo_cache)}
    started = time.monotonic()
    result = run_cli("demo", "--headless", "--run-dir", tmp_path / "run", env=env, timeout=FULL_DEMO_BOUND_S)
    assert time.monotonic() - started < FULL_DEMO_BOUND_S
    events = [json.loads(line) for line in result.stdout.splitlines()]  # stdout: JSON lines only
    status = status_json(tmp_path / "run")
    assert events[0]["type"] == "run_created"
    assert [e["state"] for e in events if e["type"] == "session_state"][-1] == status["state"]
    gates = {g["gate_id"]: g for g in status["gates"]}
    failed = [g for g in gates.values() if g["status"] == "fail"]
    assert gates["migration"]["status"] == "pass"  # the sample scripts keep the policy
    if result.returncode == 0:  # every gate passed, the reviewer's and the stat gate included
        assert status["state"] == "completed" and not failed
        assert [p["state"] for p in status["phases"]] == ["passed"] * 8
        assert "reviewer says SCALE" in gates["pilot-review"]["summary"]
        assert gates["adapter-better"]["metrics"]["p"] < 0.01
    else:  # a gate failed honestly: the session stopped there, with the failed gate in the incident
        assert result.returncode == 3 and status["state"] == "stopped" and failed
        front, _ = incident(status)
        assert front["trigger"] == "gate_failed" and failed[0]["gate_id"] in status["reason"]
    assert (tmp_path / "run-workspace" / "session.toml").is_file()
    assert "what the phases measured:" in result.stderr and "demo ended: exit code" in result.stderr


# fault, phases of the cut-down session, phase the fault hits, exit code, incident trigger
CASES = [
    ("contamination", ["load"], None, 3, "contamination"),
    ("oom", ["versions", "load"], "load", 3, "oom"),
    ("stall", ["versions", "load"], "load", 3, "stall"),
    ("budget", ["pilot", "scale", "testset", "sft", "evaluate"], None, 3, "budget_exhausted"),
    ("reviewer-hang", ["pilot", "scale"], None, 4, "reviewer_error"),
]


@pytest.mark.parametrize(("fault", "phases", "target", "code", "trigger"), CASES, ids=[c[0] for c in CASES])
def test_each_fault_ends_with_its_exit_code_and_report(tmp_path, demo_model, demo_cache, fault, phases,
                                                       target, code, trigger):
    said: list[str] = []
    result = run_demo(tmp_path / "run", headless=True, fault=fault, cache_dir=demo_cache, phases=phases,
                      fault_phase=target, say=said.append)
    status = status_json(tmp_path / "run")
    assert result == code, status["reason"]
    front, _ = incident(status)
    assert front["trigger"] == trigger
    if fault == "reviewer-hang":  # a reviewer that times out is a reviewer error: the session pauses
        assert status["state"] == "paused"
        gate = next(g for g in status["gates"] if g["gate_id"] == "pilot-review")
        assert gate["status"] == "pending" and "timed out after 5s" in gate["summary"]
        assert "waiting for an operator on pilot-review" in (tmp_path / "run" / "CHECKPOINT.md").read_text()
        # The report's way back: the operator approves, and the scale phase accepts the approved pilot.
        assert run_cli("approve", tmp_path / "run", "pilot-review", "--note", "QC read by hand").returncode == 0
        resumed = run_cli("resume", tmp_path / "run", timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert status_json(tmp_path / "run")["state"] == "completed"
    else:
        assert status["state"] == "stopped"
    assert front["phase"] == (target or front["phase"])
    assert f"incident report: {status['incident']}" in said[-1]


def test_an_unwritable_model_cache_is_invalid_input_naming_the_fix(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = run_cli("demo", "--run-dir", tmp_path / "run", env={**os.environ, "PHASEGATE_CACHE": str(blocker)})
    assert result.returncode == 2 and str(blocker) in result.stderr and "PHASEGATE_CACHE" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_an_unknown_fault_is_invalid_input(tmp_path):
    result = run_cli("demo", "--fault", "meteor", "--run-dir", tmp_path / "run")
    assert result.returncode == 2 and all(f in result.stderr for f in FAULTS)


def test_the_controller_process_the_tui_watches_injects_the_fault(tmp_path, demo_model, demo_cache):
    opened = prepare_demo(tmp_path / "run", fault="oom", cache_dir=demo_cache, phases=["versions", "load"],
                          fault_phase="load", say=lambda _: None)
    opened.journal.close()
    argv = [sys.executable, "-m", "phasegate.demo.run", str(tmp_path / "run"), "--fault", "oom",
            "--fault-phase", "load"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr
    front, text = incident(status_json(tmp_path / "run"))
    assert front["trigger"] == "oom" and front["phase"] == "load" and "(simulated)" in text


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_on_a_terminal_the_demo_opens_the_tui_and_reports_on_quit(tmp_path, demo_model, demo_cache):
    pane = Pane(tmp_path / "tmux.sock", f"cd {tmp_path} && PHASEGATE_CACHE={demo_cache} {sys.executable} -m "
                f"phasegate demo --fault contamination --run-dir {tmp_path / 'run'}")
    try:
        pane.wait_for("■ STOPPED", "contamination", timeout=240)
        pane.keys("q")
        text = pane.wait_for("PHASEGATE-EXIT=3", timeout=30)
    finally:
        pane.close()
    assert "demo ended: exit code 3 (stopped)" in text and "incident report:" in text
