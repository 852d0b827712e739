"""`target_kept`: the pilot and scale generate round after round until enough rows are kept, or stop at
`max_candidates` and fail their QC rule; a resumed run equals an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from phasegate.pipeline.data.pilot import GenerateParams
from phasegate.pipeline.data.qc import merge_thresholds, write_qc_summary
from phasegate.pipeline.data.rounds import next_round, target_metrics
from phasegate.pipeline.files import read_jsonl
from tests.scale_sft_eval.conftest import (
    PILOT_PARAMS,
    events_to,
    read_events,
    run_phase,
    upstream,
    write_context,
)

MEASURED = {"model_load_s", "gen_s", "rows_per_s", "kept_per_candidate"}


def test_each_round_asks_for_what_is_missing_over_the_acceptance_plus_a_margin() -> None:
    assert next_round(100, 0, 0, 300, first=100) == 100  # the first round
    # 40 of 100 kept: 60 missing at 40% is 150, plus 10% -> 165, rounded up to whole batches of 16.
    assert next_round(100, 40, 100, 300, first=100) == 165
    assert next_round(100, 40, 100, 300, first=100, multiple=16) == 176
    assert next_round(100, 40, 250, 300, first=100) == 50  # never past the cap
    assert next_round(100, 0, 100, 300, first=100) == 200  # nothing kept yet: the rest of the cap
    assert next_round(100, 100, 150, 300, first=100) == 0  # reached
    assert next_round(100, 99, 300, 300, first=100) == 0  # the cap is spent


def test_max_candidates_needs_a_target_and_defaults_to_three_times_it() -> None:
    with pytest.raises(ValidationError, match="max_candidates caps a `target_kept` run"):
        GenerateParams(max_candidates=50)
    params = GenerateParams(target_kept=40)
    assert (params.candidate_cap, params.first_round) == (120, 40)
    assert GenerateParams(target_kept=40, count=64).first_round == 64
    assert GenerateParams().candidate_cap is None


def test_a_shortfall_fails_the_target_rule_with_its_reason(tmp_path: Path) -> None:
    assert "target_reached" not in merge_thresholds(None)
    rules = merge_thresholds(None, target_kept=10)
    short = target_metrics(10, 30, n_kept=4, n_candidates=30)
    assert short["target_reached"] == 0 and "max_candidates 30 reached with 4 rows kept" in short["stop_reason"]
    summary = write_qc_summary(tmp_path / "qc.json", short, {"target_reached": rules["target_reached"]})
    assert summary["failed_rules"] == ["target_reached == 1"] and not summary["passed"]
    assert target_metrics(10, 30, n_kept=12, n_candidates=20)["target_reached"] == 1
    assert target_metrics(None, None, 3, 4) == {}


def _pilot(root: Path, model: Path, **params) -> tuple[int, dict, dict]:
    """Run the pilot in this process; its exit code, qc_summary.json and manifest."""
    context = write_context(root, "generate", "pilot", model,
                            {**{k: v for k, v in PILOT_PARAMS.items() if k != "count"}, **params})
    with events_to(root / "events.jsonl"):
        code = run_phase("generate", context)
    artifacts = root / "run" / "artifacts" / "pilot"
    return (code, json.loads((artifacts / "qc_summary.json").read_text()),
            json.loads((artifacts / "session_manifest.json").read_text()))


@pytest.fixture(scope="module")
def pilot_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """A target_kept pilot, then the same pilot resumed after its last batches were lost."""
    root = tmp_path_factory.mktemp("target-pilot")
    params = {"target_kept": 2, "max_candidates": 24, "batch_size": 4}
    code, qc, manifest = _pilot(root, tiny_model_dir, **params)
    candidates = (root / "run" / "artifacts" / "pilot" / "pilot_candidates.jsonl").read_bytes()
    batches = sorted((root / "run" / "state" / "pilot" / "batches").glob("batch-*.jsonl"))
    for lost in batches[-2:]:  # as if the run had died two batches before its end
        lost.unlink()
    again = _pilot(root, tiny_model_dir, **params)
    return {"root": root, "code": code, "qc": qc, "manifest": manifest, "candidates": candidates,
            "n_batches": len(batches), "again": again}


def test_the_pilot_generates_until_the_target_or_the_cap(pilot_run: dict) -> None:
    qc, manifest = pilot_run["qc"], pilot_run["manifest"]
    assert pilot_run["code"] == 0
    assert qc["target_kept"] == 2 and qc["max_candidates"] == 24
    rules = [t["rule"] for t in qc["thresholds"]]
    assert "target_reached == 1" in rules
    if qc["target_reached"]:
        assert qc["n_kept"] >= 2 and qc["stop_reason"].startswith("target reached")
        assert qc["n_candidates"] <= 24
    else:
        assert qc["n_candidates"] == 24 and qc["n_kept"] < 2 and "target_reached == 1" in qc["failed_rules"]
    assert sum(manifest["rounds"]) == qc["n_candidates"] and manifest["rounds"][0] == 4
    assert len(manifest["batches"]["generated"]) == pilot_run["n_batches"]


def test_the_pilot_reports_its_measured_rates(pilot_run: dict) -> None:
    metrics = {e["name"]: e["value"] for e in read_events(pilot_run["root"] / "events.jsonl")
               if e["type"] == "metric"}
    assert MEASURED <= set(metrics)
    assert metrics["kept_per_candidate"] == pytest.approx(pilot_run["qc"]["n_kept"] / pilot_run["qc"]["n_candidates"])
    assert metrics["target_reached"] == pilot_run["qc"]["target_reached"]


def test_a_resumed_pilot_equals_the_uninterrupted_one(pilot_run: dict) -> None:
    code, qc, manifest = pilot_run["again"]
    assert code == 0
    n = pilot_run["n_batches"]
    lost = min(2, n)
    assert manifest["batches"] == {"generated": list(range(n - lost, n)), "reused": list(range(n - lost))}
    assert manifest["rounds"] == pilot_run["manifest"]["rounds"]
    artifacts = pilot_run["root"] / "run" / "artifacts" / "pilot"
    assert (artifacts / "pilot_candidates.jsonl").read_bytes() == pilot_run["candidates"]
    assert qc["n_kept"] == pilot_run["qc"]["n_kept"]


def test_scale_adds_shards_until_the_target_and_resumes_to_the_same_rows(tmp_path: Path,
                                                                         tiny_model_dir: Path) -> None:
    pilot = write_context(tmp_path, "generate", "pilot", tiny_model_dir, PILOT_PARAMS)
    assert run_phase("generate", pilot) == 0
    params = {"target_kept": 3, "max_candidates": 12, "count": 4, "num_shards": 2, "workers": 2}
    context = write_context(tmp_path, "scale", "scale", tiny_model_dir, params,
                            upstream=upstream(tmp_path, "pilot", "generate", gates={}))
    with events_to(tmp_path / "events.jsonl"):
        assert run_phase("scale", context) == 0
    artifacts = tmp_path / "run" / "artifacts" / "scale"
    qc = json.loads((artifacts / "qc_summary.json").read_text())
    manifest = json.loads((artifacts / "session_manifest.json").read_text())
    plan = manifest["shards"]["plan"]
    # Shards of the first round's size (4 over 2 shards), numbered on, each with its own seed.
    assert [s["index"] for s in plan] == list(range(len(plan))) and all(s["count"] == 2 for s in plan)
    assert sum(manifest["rounds"]) == qc["n_candidates"] == 2 * len(plan) and manifest["rounds"][0] == 4
    assert qc["target_reached"] == int(qc["n_kept"] >= 3)
    assert qc["target_reached"] or qc["n_candidates"] == 12
    rows = read_jsonl(artifacts / "scale_candidates.jsonl")
    assert [r["shard"] for r in rows] == sorted(r["shard"] for r in rows)  # shard order, for the dedup
    metrics = {e["name"] for e in read_events(tmp_path / "events.jsonl") if e["type"] == "metric"}
    assert MEASURED <= metrics
    # Lose the last shard, as a crash before it finished would: the re-run makes the same rows.
    shards = tmp_path / "run" / "state" / "scale" / "shards"
    last = len(plan) - 1
    for name in (f"shard-{last:05d}.jsonl", f"shard-{last:05d}.done.json"):
        (shards / name).unlink()
    before = (artifacts / "scale_candidates.jsonl").read_bytes()
    assert run_phase("scale", context) == 0
    again = json.loads((artifacts / "session_manifest.json").read_text())
    assert again["shards"]["generated"] == [last] and again["shards"]["reused"] == list(range(last))
    assert (artifacts / "scale_candidates.jsonl").read_bytes() == before
