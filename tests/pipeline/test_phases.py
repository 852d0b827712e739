"""The built-in phases end to end: `python -m phasegate.pipeline KIND --context FILE`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from phasegate.gates.base import GateStatus
from phasegate.gates.threshold import evaluate_rules, parse_rule
from phasegate.pipeline.__main__ import main
from phasegate.pipeline.data.qc import DEFAULT_THRESHOLDS
from phasegate.pipeline.files import read_jsonl, sha256_file

# Small and permissive so the random tiny model's rows travel the whole pipeline.
PILOT_PARAMS = {
    "count": 8,
    "batch_size": 4,
    "max_new_tokens": 16,
    "instruction_max_new_tokens": 12,
    "filter_instructions": False,
    "keep_truncated_instructions": True,
}


def write_context(root: Path, kind: str, model: Path | None, params: dict, *, model_keys: dict | None = None,
                  **extra) -> Path:
    """A context file like the controller writes, for phase `kind` under `root`; `model_keys` go into [model]."""
    context = {
        "phase_id": kind,
        "kind": kind,
        "run_dir": str(root / "run"),
        "session_dir": str(root),
        "artifacts_dir": str(root / "run" / "artifacts" / kind),
        "model": {"path": str(model), **(model_keys or {})} if model else None,
        "params": params,
        **extra,
    }
    path = root / f"{kind}.json"
    path.write_text(json.dumps(context))
    return path


def run_child(kind: str, context: Path, events: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a phase as the controller does: a child process reporting on an events fd."""
    with open(events, "a") as sink:
        env = {**os.environ, "PHASEGATE_EVENTS_FD": str(sink.fileno())}
        return subprocess.run(
            [sys.executable, "-m", "phasegate.pipeline", kind, "--context", str(context)],
            env=env,
            pass_fds=(sink.fileno(),),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def pilot(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """One real pilot run in a child process, and a rerun after losing one batch file."""
    root = tmp_path_factory.mktemp("pilot")
    context = write_context(root, "generate", tiny_model_dir, PILOT_PARAMS, seed=3)
    artifacts = root / "run" / "artifacts" / "generate"
    batch_dir = root / "run" / "state" / "generate" / "batches"  # kept across attempts, apart from outputs
    first = run_child("generate", context, root / "events.jsonl")
    assert first.returncode == 0, first.stderr
    files = {p.name: p.read_bytes() for p in artifacts.glob("*.jsonl")}
    batches = {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in batch_dir.glob("batch-*")
    }
    manifest = json.loads((artifacts / "session_manifest.json").read_text())
    (batch_dir / "batch-00001.jsonl").unlink()
    second = run_child("generate", context, root / "events-rerun.jsonl")
    assert second.returncode == 0, second.stderr
    return {
        "root": root,
        "artifacts": artifacts,
        "batch_dir": batch_dir,
        "first": first,
        "files": files,
        "batches": batches,
        "manifest": manifest,
        "context": context,
    }


def test_pilot_writes_its_files(pilot: dict) -> None:
    artifacts = pilot["artifacts"]
    for name in (
        "pilot_data.jsonl",
        "pilot_candidates.jsonl",
        "qc_summary.json",
        "session_manifest.json",
        "provenance.json",
    ):
        assert (artifacts / name).is_file(), name
    assert json.loads(pilot["first"].stdout.splitlines()[-1]) == {
        "phase": "generate",
        "exit_code": 0,
    }


def test_pilot_rows_carry_critiques_parameters_and_provenance(pilot: dict) -> None:
    rows = read_jsonl(pilot["artifacts"] / "pilot_candidates.jsonl")
    assert len(rows) == 8
    provenance_sha = sha256_file(pilot["artifacts"] / "provenance.json")
    for row in rows:
        assert row["seed"] == 3 and row["provenance_ref"]["sha256"] == provenance_sha
        assert row["generation_params"]["responses"]["max_new_tokens"] == 16
        if row["instruction_status"] == "ok":
            assert {"logp_a", "logp_b", "margin", "confident", "accepted"} <= row[
                "instruction_critique"
            ].keys()
            assert {"logp_a", "logp_b", "margin"} <= row["pair_critique"].keys()
            assert isinstance(row["response"], str) and row["generation"]["n_new_tokens"] <= 16
    kept = read_jsonl(pilot["artifacts"] / "pilot_data.jsonl")
    assert kept == [r for r in rows if r["kept"]]


def test_qc_summary_is_decided_by_the_threshold_gate(pilot: dict) -> None:
    path = pilot["artifacts"] / "qc_summary.json"
    summary = json.loads(path.read_text())
    assert [t["rule"] for t in summary["thresholds"]] == list(DEFAULT_THRESHOLDS.values())
    assert summary["n_candidates"] == 8
    result = evaluate_rules([parse_rule(rule) for rule in DEFAULT_THRESHOLDS.values()], path)
    assert result.status == (GateStatus.PASS if summary["passed"] else GateStatus.FAIL)
    # A random model rambles until the token limit, so its pilot must not pass QC.
    assert result.status == GateStatus.FAIL and "token_limit_rate" in result.summary


def test_progress_metrics_and_artifacts_are_reported(pilot: dict) -> None:
    events = read_jsonl(pilot["root"] / "events.jsonl")
    steps = [e["step"] for e in events if e["type"] == "progress"]
    assert "batch 1/2: instructions" in steps and "batch 2/2: pair_critic" in steps
    metrics = {e["name"] for e in events if e["type"] == "metric"}
    assert {"runaway_rate", "median_tokens", "instruction_acceptance"} <= metrics
    artifacts = {Path(e["path"]).name for e in events if e["type"] == "artifact"}
    assert {"pilot_data.jsonl", "qc_summary.json", "session_manifest.json"} <= artifacts


def test_rerun_redoes_only_the_missing_batch(pilot: dict) -> None:
    artifacts = pilot["artifacts"]
    assert pilot["manifest"]["batches"] == {"generated": [0, 1], "reused": []}
    manifest = json.loads((artifacts / "session_manifest.json").read_text())
    assert manifest["batches"] == {"generated": [1], "reused": [0]}
    content, mtime = pilot["batches"]["batch-00000.jsonl"]
    assert (pilot["batch_dir"] / "batch-00000.jsonl").stat().st_mtime_ns == mtime
    assert not (artifacts / "batches").exists()
    # Seeds are per batch and step, so the redone batch is the same as the lost one.
    assert (pilot["batch_dir"] / "batch-00001.jsonl").read_bytes() == pilot["batches"][
        "batch-00001.jsonl"
    ][0]
    assert (artifacts / "pilot_candidates.jsonl").read_bytes() == pilot["files"][
        "pilot_candidates.jsonl"
    ]


def test_changed_parameters_set_old_batches_aside(
    pilot: dict, tiny_model_dir: Path, capsys
) -> None:
    context = write_context(
        pilot["root"], "generate", tiny_model_dir, {**PILOT_PARAMS, "seed": 11}, seed=3
    )
    assert main(["generate", "--context", str(context)]) == 0
    manifest = json.loads((pilot["artifacts"] / "session_manifest.json").read_text())
    assert manifest["batches"] == {"generated": [0, 1], "reused": []} and manifest["seed"] == 11
    assert list(pilot["batch_dir"].parent.glob("batches.stale-*"))
    assert "moved them to" in capsys.readouterr().err


def test_load_check_stops_a_contaminated_model(
    tmp_path: Path, contaminated_model_dir: Path, capsys
) -> None:
    context = write_context(tmp_path, "load_check", contaminated_model_dir, {})
    assert main(["load_check", "--context", str(context)]) == 3
    err = capsys.readouterr().err
    assert "special_id_hits" in err and "Response:" in err
    report = json.loads(
        (tmp_path / "run" / "artifacts" / "load_check" / "load_check.json").read_text()
    )
    assert report["passed"] is False and report["failed_checks"] == ["template_markers"]


def test_load_check_passes_a_templated_base_model(
    tmp_path: Path, templated_model_dir: Path
) -> None:
    context = write_context(tmp_path, "load_check", templated_model_dir, {})
    assert main(["load_check", "--context", str(context)]) == 0
    report = json.loads(
        (tmp_path / "run" / "artifacts" / "load_check" / "load_check.json").read_text()
    )
    assert report["passed"] and report["provenance"]["chat_template_removed"] is True


def test_baseline_eval_records_the_follow_rate(tmp_path: Path, tiny_model_dir: Path) -> None:
    context = write_context(tmp_path, "baseline_eval", tiny_model_dir, {"max_new_tokens": 8})
    assert main(["baseline_eval", "--context", str(context)]) == 0
    result = json.loads(
        (tmp_path / "run" / "artifacts" / "baseline_eval" / "baseline_eval.json").read_text()
    )
    assert result["n"] == 16 and 0.0 <= result["follow_rate"] <= 1.0
    assert result["generation_params"]["temperature"] == 0.0


@pytest.mark.parametrize(
    ("params", "model", "message"),
    [
        ({"cuont": 8}, "tiny", "cuont"),
        ({"thresholds": {"median_tokens": "median_tokens is low"}}, "tiny", "metric op number"),
        ({}, None, r"no \[model\] table"),
        ({}, "missing", "does not exist"),
    ],
)
def test_bad_input_exits_2_with_the_reason(
    tmp_path: Path, tiny_model_dir: Path, capsys, params, model, message
) -> None:
    folder = {"tiny": tiny_model_dir, "missing": tmp_path / "nope", None: None}[model]
    context = write_context(tmp_path, "generate", folder, params)
    assert main(["generate", "--context", str(context)]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_larger_count_extends_the_pilot(tmp_path: Path, tiny_model_dir: Path) -> None:
    params = {**PILOT_PARAMS, "count": 4}
    assert (
        main(
            [
                "generate",
                "--context",
                str(write_context(tmp_path, "generate", tiny_model_dir, params)),
            ]
        )
        == 0
    )
    more = {**params, "count": 6}
    assert (
        main(
            [
                "generate",
                "--context",
                str(write_context(tmp_path, "generate", tiny_model_dir, more)),
            ]
        )
        == 0
    )
    manifest = json.loads(
        (tmp_path / "run" / "artifacts" / "generate" / "session_manifest.json").read_text()
    )
    assert manifest["batches"] == {"generated": [1], "reused": [0]}
    assert manifest["counts"]["n_candidates"] == 6
