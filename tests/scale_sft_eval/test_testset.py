"""The `testset` phase: deterministic held-out instructions and the overlap check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phasegate.gates.base import GateStatus
from phasegate.gates.threshold import evaluate_rules, parse_rule
from phasegate.pipeline.data.dedup import NearDupIndex, jaccard, normalize_text, word_ngrams
from phasegate.pipeline.data.testset import TEMPLATES, build_testset
from phasegate.pipeline.files import read_jsonl
from tests.scale_sft_eval.conftest import run_phase, upstream, write_context, write_jsonl


def test_normalization_and_ngrams() -> None:
    assert normalize_text("  List THREE  fruits!! ") == "list three fruits"
    grams = word_ngrams("What is the capital of France?", 3)
    assert ("capital", "of", "france") in grams and len(grams) == 4
    assert word_ngrams("Hi", 3) == frozenset({("hi",)})
    assert jaccard(frozenset(), frozenset()) == 0.0


def test_near_duplicate_index() -> None:
    index = NearDupIndex(["What is the capital of France?", "Write a haiku about the sea."], n=3)
    exact = index.best_match("what is the CAPITAL of france", 0.8)
    assert exact is not None and (exact.index, exact.kind) == (0, "exact")
    near = index.best_match("Please write a haiku about the sea.", 0.6)
    assert near is not None and near.kind == "near" and near.index == 1
    assert near.similarity == pytest.approx(4 / 5)
    # One slot changed in a short question: similar, but a different question.
    assert index.best_match("What is the capital of Spain?", 0.8) is None


def test_the_test_set_is_deterministic_distinct_and_balanced() -> None:
    rows = build_testset(list(TEMPLATES), 40, seed=7)
    assert len(rows) == 200 and rows == build_testset(list(TEMPLATES), 40, seed=7)
    assert len({normalize_text(r["instruction"]) for r in rows}) == 200
    assert {t: sum(r["type"] == t for r in rows) for t in TEMPLATES} == dict.fromkeys(TEMPLATES, 40)
    assert build_testset(["list"], 5, seed=8) != build_testset(["list"], 5, seed=7)


def test_unknown_types_and_too_many_per_type_are_refused(tmp_path: Path) -> None:
    from phasegate.pipeline.errors import PhaseInputError

    with pytest.raises(PhaseInputError, match="unknown instruction type"):
        build_testset(["poetry"], 3, seed=0)
    with pytest.raises(PhaseInputError, match="set per_type to at most 60"):
        build_testset(["open_qa"], 61, seed=0)


def test_overlap_is_reported_for_the_threshold_gate(tmp_path: Path) -> None:
    clean = build_testset(["open_qa", "list"], 3, seed=3)
    write_jsonl(tmp_path / "train.jsonl", [
        {"instruction": clean[0]["instruction"].upper(), "response": "x"},   # exact after normalizing
        {"instruction": clean[2]["instruction"][:-1] + " today?", "response": "y"},  # near
        {"instruction": "Something else entirely.", "response": "z"},
    ])
    context = write_context(tmp_path, "testset", "testset", None,
                            {"per_type": 3, "types": ["open_qa", "list"],
                             "near_dup_threshold": 0.75, "train_data": ["train.jsonl"]})
    assert run_phase("testset", context) == 0  # the gate decides, not the phase
    artifacts = tmp_path / "run" / "artifacts" / "testset"
    assert read_jsonl(artifacts / "testset.jsonl") == clean
    report = json.loads((artifacts / "overlap_report.json").read_text())
    assert (report["overlap_count"], report["exact_count"], report["near_count"]) == (2, 1, 1)
    assert {o["test_id"]: o["train_line"] for o in report["overlaps"]} == {
        clean[0]["id"]: 1, clean[2]["id"]: 2}
    gate = evaluate_rules([parse_rule("overlap_count == 0")], artifacts / "overlap_report.json")
    assert gate.status == GateStatus.FAIL and "overlap_count = 2" in gate.summary


def test_default_training_data_is_the_upstream_pilot(tmp_path: Path, pilot_root: Path) -> None:
    context = write_context(tmp_path, "testset", "testset", None, {"per_type": 2},
                            upstream=upstream(pilot_root, "pilot", "generate"))
    assert run_phase("testset", context) == 0
    report = json.loads((tmp_path / "run/artifacts/testset/overlap_report.json").read_text())
    assert report["train_files"][0]["path"].endswith("pilot/pilot_data.jsonl")
    assert report["n_test"] == 10 and report["overlap_count"] == 0


def test_no_training_data_is_an_input_error(tmp_path: Path, capsys) -> None:
    context = write_context(tmp_path, "testset", "testset", None, {"per_type": 2})
    assert run_phase("testset", context) == 2
    assert "no earlier phase of kind scale or generate" in capsys.readouterr().err
