"""The `scale` phase: pilot gating, deterministic resumable shards (local processes and Ray), merge."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from phasegate.gates.base import GateStatus
from phasegate.gates.threshold import evaluate_rules, parse_rule
from phasegate.pipeline.data.batch_log import BatchLog
from phasegate.pipeline.data.executors import local_slots
from phasegate.pipeline.data.pilot import GenerateParams
from phasegate.pipeline.data.scale import merge
from phasegate.pipeline.data.shards import ShardJob, plan_shards, write_shard
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.files import read_jsonl
from phasegate.pipeline.model.spec import ModelSpec
from tests.scale_sft_eval.conftest import (
    events_to,
    read_events,
    run_child,
    run_phase,
    upstream,
    write_context,
)

SCALE_PARAMS = {"count": 8, "num_shards": 2, "workers": 2, "temperature": 0.5}


def scale_context(root: Path, model: Path | None, pilot_root: Path, phase_id: str = "scale",
                  params: dict | None = None, **pilot_state) -> Path:
    """A scale context whose upstream is the finished pilot under `pilot_root`."""
    up = upstream(pilot_root, "pilot", "generate", **pilot_state)
    return write_context(root, "scale", phase_id, model, params or SCALE_PARAMS, upstream=up)


@pytest.mark.parametrize(("state", "gates", "message"), [
    ("failed", {"pilot.qc": "fail", "pilot.rows": "pass"},
     r"pilot phase 'pilot' gate 'pilot.qc' is fail; fix the pilot .* `phasegate waive .* pilot.qc"),
    ("pending", {"pilot.review": "pending"}, r"gate 'pilot.review' is pending; .*phasegate approve"),
    ("failed", {}, r"pilot phase 'pilot' is failed, not passed"),
])
def test_scale_refuses_unless_the_pilot_passed(tmp_path: Path, pilot_root: Path, capsys,
                                               state: str, gates: dict, message: str) -> None:
    # No model: the refusal comes before anything is loaded or hashed.
    context = scale_context(tmp_path, None, pilot_root, state=state, gates=gates)
    assert run_phase("scale", context) == 2
    err = capsys.readouterr().err
    assert "phase 'scale' (scale) refuses to start" in err
    assert re.search(message, err), err
    assert not (tmp_path / "run" / "artifacts" / "scale").exists()


def test_scale_needs_a_pilot(tmp_path: Path, pilot_root: Path, capsys) -> None:
    assert run_phase("scale", write_context(tmp_path, "scale", "scale", None, {})) == 2
    assert "no earlier `generate` phase" in capsys.readouterr().err
    context = scale_context(tmp_path, None, pilot_root, params={"pilot": "pilot2"})
    assert run_phase("scale", context) == 2
    assert "no earlier phase 'pilot2' (earlier phases: pilot)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path,
              pilot_root: Path) -> dict:
    """A 2-shard local scale run whose shard 1 crashes, then the re-run (real subprocesses)."""
    root = tmp_path_factory.mktemp("scale-local")
    context = scale_context(root, tiny_model_dir, pilot_root, gates={"pilot.qc": "waived"})
    shards = root / "run" / "state" / "scale" / "shards"
    crashed = run_child("scale", context, root / "events-1.jsonl",
                        env={"PHASEGATE_FAULT": "scale_crash_shard:1"})
    after_crash = sorted(p.name for p in shards.iterdir())
    shard0_mtime = (shards / "shard-00000.jsonl").stat().st_mtime_ns
    with events_to(root / "events-2.jsonl"):  # the re-run in this process: faster, same code
        rerun = run_phase("scale", context)
    return {"root": root, "crashed": crashed, "rerun": rerun, "after_crash": after_crash,
            "shard0_mtime": shard0_mtime, "artifacts": root / "run" / "artifacts" / "scale",
            "shards": shards}


def test_a_crashed_shard_fails_the_phase_and_keeps_the_finished_one(local_run: dict) -> None:
    crashed = local_run["crashed"]
    assert crashed.returncode == 1, crashed.stderr
    assert "shard(s) 1 (exit 70) failed" in crashed.stderr
    assert "re-run the phase to run only shards [1]" in crashed.stderr
    assert "shard-00000.done.json" in local_run["after_crash"]
    # Shard 1 died after its work and before its files: only its log of finished batches is left.
    assert [n for n in local_run["after_crash"] if n.startswith("shard-00001")] == ["shard-00001.batches.jsonl"]


def test_the_rerun_runs_only_the_unfinished_shard(local_run: dict) -> None:
    artifacts = local_run["artifacts"]
    assert local_run["rerun"] == 0
    manifest = json.loads((artifacts / "session_manifest.json").read_text())
    assert (manifest["shards"]["generated"], manifest["shards"]["reused"]) == ([1], [0])
    assert manifest["shards"]["resumed_at_batch"] == {"1": 1}  # its one batch was kept, not redone
    assert (local_run["shards"] / "shard-00000.jsonl").stat().st_mtime_ns == local_run["shard0_mtime"]
    assert not (local_run["shards"] / "shard-00001.batches.jsonl").exists()  # the done shard holds the rows
    assert not (artifacts / "shards").exists()
    rows = read_jsonl(artifacts / "scale_candidates.jsonl")
    assert len(rows) == 8 and [r["shard"] for r in rows] == [0] * 4 + [1] * 4
    assert len({r["id"] for r in rows}) == 8
    assert read_jsonl(artifacts / "scale_data.jsonl") == [r for r in rows if r["kept"]]


def test_scale_uses_the_pilots_parameters_with_overrides(local_run: dict) -> None:
    manifest = json.loads((local_run["artifacts"] / "session_manifest.json").read_text())
    params = manifest["params"]
    assert params["max_new_tokens"] == 12 and params["batch_size"] == 4  # the pilot's
    assert params["temperature"] == 0.5 and params["count"] == 8  # this phase's
    assert manifest["pilot"]["phase_id"] == "pilot"
    rows = read_jsonl(local_run["artifacts"] / "scale_candidates.jsonl")
    assert {r["generation_params"]["responses"]["temperature"] for r in rows if r["generation"]} == {0.5}


def test_qc_summary_has_the_pilots_format_and_rules(local_run: dict, pilot_root: Path) -> None:
    artifacts = local_run["artifacts"]
    summary = json.loads((artifacts / "qc_summary.json").read_text())
    pilot = json.loads((pilot_root / "run/artifacts/pilot/qc_summary.json").read_text())
    assert [t["rule"] for t in summary["thresholds"]] == [t["rule"] for t in pilot["thresholds"]]
    assert summary["n_candidates"] == 8 and "n_duplicates" in summary
    rules = [parse_rule(t["rule"]) for t in summary["thresholds"]]
    result = evaluate_rules(rules, artifacts / "qc_summary.json")
    assert result.status == (GateStatus.PASS if summary["passed"] else GateStatus.FAIL)


def test_progress_spans_the_shards(local_run: dict) -> None:
    events = read_events(local_run["root"] / "events-2.jsonl")
    progress = [e for e in events if e["type"] == "progress"]
    assert progress[-1]["done"] == progress[-1]["total"] == 2 * 5  # 2 shards x 1 batch x 5 steps
    assert progress[-1]["step"] == "shards 2/2 done"
    assert progress[0]["done"] >= 5  # the reused shard counts as done from the start
    names = {Path(e["path"]).name for e in events if e["type"] == "artifact"}
    assert {"scale_data.jsonl", "qc_summary.json", "session_manifest.json"} <= names


@pytest.mark.ray
def test_ray_executor_gives_the_same_rows(local_run: dict, tiny_model_dir: Path,
                                          pilot_root: Path) -> None:
    ray = pytest.importorskip("ray")
    # No Ray running: the phase starts a local one with `workers` CPUs (ray.init(num_cpus=2))
    # and shuts it down again.
    assert not ray.is_initialized()
    context = scale_context(local_run["root"], tiny_model_dir, pilot_root, "scale_ray",
                            {**SCALE_PARAMS, "executor": "ray"})
    try:
        assert run_phase("scale", context) == 0
    finally:
        if ray.is_initialized():
            ray.shutdown()
            pytest.fail("the phase left the Ray it started running")
    ray_dir = local_run["root"] / "run" / "artifacts" / "scale_ray"
    manifest = json.loads((ray_dir / "session_manifest.json").read_text())
    assert manifest["executor"] == "ray" and manifest["shards"]["generated"] == [0, 1]
    # Shard seeds depend on the session seed and the shard index only, not on the executor.
    local = (local_run["artifacts"] / "scale_candidates.jsonl").read_bytes()
    assert (ray_dir / "scale_candidates.jsonl").read_bytes() == local


def test_merge_drops_repeated_instructions(tmp_path: Path) -> None:
    job = ShardJob(model=ModelSpec(path="m"), model_base=".", params=GenerateParams(count=4),
                   seed=0, fingerprint="f", shard_dir=str(tmp_path), shards=plan_shards(4, 2, 0))

    def row(i: int, text: str, kept: bool = True) -> dict:
        return {"id": f"r{i}", "instruction": text, "kept": kept}

    write_shard(tmp_path, 0, "f", [row(0, "Name two rivers."), row(1, "x", False)], {"weights_sha256": "w"})
    write_shard(tmp_path, 1, "f", [row(2, "name TWO rivers"), row(3, "Other.")], {"weights_sha256": "w"})
    rows, provenance, duplicates = merge(job)
    assert duplicates == 1 and [r["kept"] for r in rows] == [True, False, False, True]
    assert rows[2]["duplicate_of"] == "r0" and provenance == {"weights_sha256": "w"}
    write_shard(tmp_path, 1, "f", [row(3, "Other.")], {"weights_sha256": "other"})
    with pytest.raises(PhaseInputError, match="other model files"):
        merge(job)


def test_a_torn_batch_line_is_cut_off_and_the_next_batch_follows_it(tmp_path: Path) -> None:
    path = tmp_path / "shard-00000.batches.jsonl"
    with BatchLog(path) as log:
        log.append(0, [{"id": "a"}])
        log.append(1, [{"id": "b"}, {"id": "c"}])
    with open(path, "ab") as handle:  # a worker killed in the middle of writing batch 2
        handle.write(b'{"batch": 2, "rows": [{"id": "d"')
    with BatchLog(path) as log:
        assert log.finished() == [[{"id": "a"}], [{"id": "b"}, {"id": "c"}]]
        log.append(2, [{"id": "d"}])
    with BatchLog(path) as log:
        assert [rows[0]["id"] for rows in log.finished()] == ["a", "b", "d"]
    assert path.read_text().count("\n") == 3  # the torn bytes are gone, not glued to the next line


def test_shard_plan_and_worker_slots(monkeypatch) -> None:
    plan = plan_shards(10, 3, seed=5)
    assert [s.count for s in plan] == [4, 3, 3]
    assert plan_shards(10, 4, seed=5)[1].seed == plan[1].seed  # a shard's seed: seed + index only
    assert len({s.seed for s in plan}) == 3 and [s.count for s in plan_shards(2, 4, 0)] == [1, 1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert local_slots(4, None, use_gpus=True) == [{"CUDA_VISIBLE_DEVICES": "3"},
                                                   {"CUDA_VISIBLE_DEVICES": "5"}]
    assert local_slots(1, None, use_gpus=True) == [{"CUDA_VISIBLE_DEVICES": "3"}]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    slots = local_slots(3, None, use_gpus=True)
    assert len(slots) == 3 and slots[0]["OMP_NUM_THREADS"] == "2"  # a fair share of the cores
    assert len(local_slots(3, 1, use_gpus=False)) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert local_slots(1, None, use_gpus=False)[0]["OMP_NUM_THREADS"] == "1"
