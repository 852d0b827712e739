"""The budget projection: a later generation phase's minutes from the rate an earlier phase measured."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phasegate.session.runs import (
    concurrent_workers,
    generation_minutes,
    open_run,
    planned_candidates,
)
from tests.conftest import run_cli, status_json

os.environ["HF_HUB_OFFLINE"] = "1"  # no test may reach a model hub; the CLI children inherit it


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from phasegate.demo.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), arch="llama", seed=0)


def test_the_model_load_is_paid_once_per_wave_and_only_generation_splits_over_workers() -> None:
    # 30 s load, 1000 candidates at 2/s: one worker 30 + 500 s; four at once over four shards 30 + 125 s.
    assert generation_minutes(1000, 2.0, 30.0) == pytest.approx(530 / 60)
    assert generation_minutes(1000, 2.0, 30.0, workers=4, shards=4) == pytest.approx(155 / 60)
    # Eight shards on four workers: two waves, so two loads.
    assert generation_minutes(1000, 2.0, 30.0, workers=4, shards=8) == pytest.approx(185 / 60)


def test_workers_at_once_follow_the_scale_executor() -> None:
    scale = {"num_shards": 8}
    assert concurrent_workers("scale", scale, "auto", gpus=4) == (4, 8)  # one worker per visible GPU
    assert concurrent_workers("scale", {**scale, "workers": 2}, "cuda", gpus=4) == (2, 8)
    assert concurrent_workers("scale", {"num_shards": 2}, "cuda", gpus=4) == (2, 2)  # never more than shards
    assert concurrent_workers("scale", {**scale, "workers": 4}, "cpu", gpus=0) == (1, 8)  # CPU workers share cores
    assert concurrent_workers("scale", {**scale, "executor": "ray", "workers": 3}, "auto", gpus=0) == (3, 8)
    assert concurrent_workers("scale", {}, "cuda", gpus=2) == (2, 10)  # scale's default num_shards
    assert concurrent_workers("generate", {"workers": 4}, "cuda", gpus=4) == (1, 1)


def test_candidates_come_from_the_target_over_the_measured_acceptance() -> None:
    assert planned_candidates({"count": 500}, 0.5) == 500
    assert planned_candidates({"target_kept": 100}, 0.5) == pytest.approx(200)
    assert planned_candidates({"target_kept": 100}, 0.2) == 300  # capped at the default 3 x target_kept
    assert planned_candidates({"target_kept": 100, "max_candidates": 1000}, 0.2) == pytest.approx(500)
    assert planned_candidates({"target_kept": 100}, None) == 300  # no acceptance known: the whole cap
    assert planned_candidates({}, 0.5) is None


def test_a_scale_budget_gate_projects_from_the_pilots_measured_rate(tmp_path: Path, tiny_model_dir: Path) -> None:
    # The pilot measures its rate; the scale's budget pre-gate then projects 150M candidates over 4 Ray
    # workers and refuses to start (even at 10,000 rows a second per worker that is over an hour, $3.75 at
    # $3.60/h, more than the $1 left), so scale never runs.
    session = f'''[session]
name = "projection"
seed = 7
budget_usd = 1.0
gpu_hourly_usd = 3.6

[model]
path = "{tiny_model_dir}"
device = "cpu"

[[phases]]
id = "pilot"
kind = "generate"
[phases.with]
count = 4
batch_size = 4
max_new_tokens = 8
instruction_max_new_tokens = 8

[[phases]]
id = "scale"
kind = "scale"
[phases.with]
count = 150000000
num_shards = 4
executor = "ray"
workers = 4

[[phases.pre_gates]]
id = "scale-budget"
kind = "budget"
'''
    (tmp_path / "s.toml").write_text(session)
    result = run_cli("run", tmp_path / "s.toml", "--run-dir", tmp_path / "run", timeout=300)
    status = status_json(tmp_path / "run")
    assert result.returncode == 3, result.stderr
    assert [p["state"] for p in status["phases"]] == ["passed", "pending"]
    measured = status["metrics"]["pilot"]
    assert measured["rows_per_s"] == pytest.approx(4 / measured["gen_s"])
    assert 0 < measured["gen_s"] and 0 < measured["model_load_s"]
    assert "kept_per_candidate" in measured
    gate = next(g for g in status["gates"] if g["gate_id"] == "scale-budget")
    assert gate["status"] == "fail"
    # One load (4 shards on 4 workers), then 150,000,000 candidates at the pilot's rate on 4 workers at once;
    # the pilot's whole wall time scaled by count (model load included, workers ignored) is not it.
    expected_min = (measured["model_load_s"] + 150_000_000 / (measured["rows_per_s"] * 4)) / 60
    assert gate["evidence"]["projected_hours"] == pytest.approx(expected_min / 60, rel=1e-6)
    opened = open_run(tmp_path / "run")
    try:
        assert opened.phase_estimate_min("scale") == pytest.approx(expected_min, rel=1e-6)
        pilot = next(p for p in status["phases"] if p["id"] == "pilot")
        assert opened.phase_estimate_min("scale") < pilot["duration_s"] / 4 * 150_000_000 / 60  # the old projection
    finally:
        opened.journal.close()
