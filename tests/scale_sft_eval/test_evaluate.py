"""The `evaluate` phase on the tiny model: paired greedy answers, the critic, the summary, the gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from phasegate.gates import GATE_KINDS
from phasegate.gates.base import GateContext
from phasegate.gates.paired_stats import mcnemar_exact, wilson_ci
from phasegate.pipeline.files import read_jsonl
from phasegate.pipeline.generation.critic import score_ab
from phasegate.pipeline.generation.generate import GenerationSettings, generate_texts
from phasegate.pipeline.generation.prompts import (
    RESPONSE_STOPS,
    pair_critic_prompt,
    response_prompt,
)
from tests.scale_sft_eval.conftest import run_phase, upstream, write_context

EVAL_PARAMS = {"max_new_tokens": 8, "batch_size": 8}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, trained: dict) -> dict:
    """A test set (2 per type) and an evaluation of the trained adapter on it."""
    root = tmp_path_factory.mktemp("eval")
    testset = write_context(root, "testset", "testset", None,
                            {"per_type": 2, "train_data": [str(trained["root"] / "train.jsonl")]})
    assert run_phase("testset", testset) == 0
    up = {**upstream(root, "testset", "testset"), **upstream(trained["root"], "sft", "sft")}
    assert run_phase("evaluate", write_context(root, "evaluate", "eval", tiny_model_dir,
                                               EVAL_PARAMS, upstream=up)) == 0
    artifacts = root / "run" / "artifacts" / "eval"
    return {"root": root, "artifacts": artifacts, "up": up,
            "summary": json.loads((artifacts / "eval_summary.json").read_text()),
            "rows": read_jsonl(artifacts / "eval_rows.jsonl")}


def test_summary_agrees_with_the_rows(evaluated: dict) -> None:
    rows, summary = evaluated["rows"], evaluated["summary"]
    assert len(rows) == 10 and sorted(summary["per_type"]) == sorted({r["type"] for r in rows})
    pairs = [(r["base"]["success"], r["adapter"]["success"]) for r in rows]
    b = sum(x and not y for x, y in pairs)
    c = sum(y and not x for x, y in pairs)
    overall = summary["overall"]
    assert (overall["n"], overall["b"], overall["c"]) == (10, b, c)
    assert overall["mcnemar_p"] == mcnemar_exact(b, c)
    k = sum(x for x, _ in pairs)
    assert overall["base"]["successes"] == k and overall["base"]["wilson_ci"] == list(wilson_ci(k, 10))
    for block in summary["per_type"].values():
        assert block["n"] == 2 and {"bh_reject", "bh_adjusted_p", "cohens_h"} <= block.keys()
    assert summary["adapter"]["kind"] == "lora_adapter" and summary["generation_params"]["temperature"] == 0.0


def test_base_answers_are_greedy_and_judged_by_the_clean_base(evaluated: dict, loaded_model) -> None:
    model, tok = loaded_model
    rows = evaluated["rows"]
    settings = GenerationSettings(max_new_tokens=8, stop=RESPONSE_STOPS, batch_size=8)
    direct = generate_texts(model, tok, [response_prompt(r["instruction"]) for r in rows], settings)
    assert [r["base"]["response"] for r in rows] == [d.text for d in direct]
    # The adapter's answers are judged by the base model with the adapter removed.
    prompts = [pair_critic_prompt(r["instruction"], r["adapter"]["response"]) for r in rows]
    margins = [c.margin for c in score_ab(model, tok, prompts, batch_size=8)]
    assert [r["adapter"]["critique"]["margin"] for r in rows] == pytest.approx(margins, abs=1e-4)
    assert any(r["base"]["response"] != r["adapter"]["response"] for r in rows)  # it trained


def test_stat_gate_reads_the_real_summary(evaluated: dict) -> None:
    context = GateContext(gate_id="eval.stat", phase_id="eval", options={},
                          session_dir=evaluated["root"], run_dir=evaluated["root"] / "run",
                          artifacts_dir=evaluated["artifacts"])
    result = GATE_KINDS["stat"]().evaluate(context)
    overall = evaluated["summary"]["overall"]
    assert result.evidence["results"]["overall"]["p"] == overall["mcnemar_p"]
    passes = overall["mcnemar_p"] < 0.01 and overall["c"] > overall["b"]
    assert result.status.value == ("pass" if passes else "fail")
    assert result.metrics["b"] == overall["b"] and result.metrics["c"] == overall["c"]


def test_an_adapter_of_another_base_is_refused(evaluated: dict, tiny_model_dir: Path,
                                               trained: dict, tmp_path: Path, capsys) -> None:
    adapter = tmp_path / "adapter"
    shutil.copytree(trained["artifacts"] / "adapter", adapter)
    provenance = json.loads((adapter / "training_provenance.json").read_text())
    provenance["base_model"]["weights_sha256"] = "0" * 64
    (adapter / "training_provenance.json").write_text(json.dumps(provenance))
    context = write_context(tmp_path, "evaluate", "eval", tiny_model_dir,
                            {**EVAL_PARAMS, "adapter": str(adapter)}, upstream=evaluated["up"])
    assert run_phase("evaluate", context) == 2
    assert "was trained on a base model with weights_sha256 000000000000" in capsys.readouterr().err


def test_a_folder_that_is_not_an_adapter_is_refused(evaluated: dict, tiny_model_dir: Path,
                                                    tmp_path: Path, capsys) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "adapter_config.json").write_text("{}")
    context = write_context(tmp_path, "evaluate", "eval", tiny_model_dir,
                            {**EVAL_PARAMS, "adapter": "broken"}, upstream=evaluated["up"])
    assert run_phase("evaluate", context) == 2
    assert "looks like a LoRA adapter but lacks adapter weights" in capsys.readouterr().err


def test_a_full_model_folder_is_evaluated_against_the_base(evaluated: dict, tiny_model_dir: Path,
                                                           tmp_path: Path) -> None:
    # The base itself as the "fine-tuned" model: every pair agrees, so there is nothing to test.
    context = write_context(tmp_path, "evaluate", "eval", tiny_model_dir,
                            {**EVAL_PARAMS, "adapter": str(tiny_model_dir)}, upstream=evaluated["up"])
    assert run_phase("evaluate", context) == 0
    summary = json.loads((tmp_path / "run/artifacts/eval/eval_summary.json").read_text())
    assert summary["adapter"]["kind"] == "full_model"
    overall = summary["overall"]
    assert (overall["b"], overall["c"], overall["mcnemar_p"], overall["cohens_h"]) == (0, 0, 1.0, 0.0)
