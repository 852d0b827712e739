"""examples/stage1.toml runs here: migration gate, phase 0, pilot QC gates, operator review."""

from pathlib import Path

from tests.conftest import run_cli, status_json

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "stage1.toml"


def test_stage1_example_pauses_for_review_then_completes(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli("run", EXAMPLE, "--run-dir", run_dir).returncode == 4
    status = status_json(run_dir)
    gates = {g["gate_id"]: g["status"] for g in status["gates"]}
    assert gates == {"migration": "pass", "migration@pilot": "pass", "pilot-rows": "pass", "pilot-qc": "pass",
                     "pilot-review": "pending"}
    assert run_cli("approve", run_dir, "pilot-review", "--note", "read 10 rows").returncode == 0
    assert run_cli("resume", run_dir).returncode == 0
    status = status_json(run_dir)
    assert status["state"] == "completed"
    assert {g["gate_id"]: g["status"] for g in status["gates"]}["pilot-review"] == "pass"
    assert (run_dir / "artifacts" / "versions" / "session_versions.json").exists()


def test_every_example_session_file_is_valid():
    for example in sorted(EXAMPLE.parent.glob("*.toml")):
        result = run_cli("check", example)
        assert result.returncode == 0, f"{example.name}: {result.stderr}"
