"""The engine seam on the hf side: batches up to 128, the static cache, identity in fingerprints, and
what `engine = "vllm"` says where vLLM cannot run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from phasegate.pipeline.__main__ import main
from phasegate.pipeline.engines.agreement import pilot_agreement
from phasegate.pipeline.engines.engine import HfEngine, require_engine
from phasegate.pipeline.errors import EXIT_INVALID_INPUT, PhaseInputError
from phasegate.pipeline.generation.generate import GenerationSettings
from phasegate.pipeline.generation.prompts import SEED_INSTRUCTIONS, response_prompt
from phasegate.pipeline.model.loader import LoadedModel
from phasegate.pipeline.model.spec import ModelSpec
from tests.pipeline.test_phases import PILOT_PARAMS, write_context

# 128 prompts of many lengths: every seed instruction, repeated with ever longer preambles.
PROMPTS = [response_prompt(("Think. " * (k // 12)) + SEED_INSTRUCTIONS[k % 12]) for k in range(128)]
HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.parametrize("batch_size", [32, 128])
def test_large_batches_give_the_ids_of_one_row_at_a_time(loaded: LoadedModel, batch_size: int) -> None:
    settings = GenerationSettings(max_new_tokens=8, batch_size=1)
    single = HfEngine(loaded.model, loaded.tokenizer).generate(PROMPTS, settings)
    batched = HfEngine(loaded.model, loaded.tokenizer).generate(
        PROMPTS, GenerationSettings(max_new_tokens=8, batch_size=batch_size)
    )
    assert [r.token_ids for r in batched] == [r.token_ids for r in single]


@pytest.mark.parametrize("batch_size", [1, 16, 128])
def test_the_static_cache_gives_the_dynamic_caches_rows(loaded: LoadedModel, batch_size: int) -> None:
    settings = GenerationSettings(max_new_tokens=12, batch_size=batch_size, stop=("\n",))
    dynamic = HfEngine(loaded.model, loaded.tokenizer).generate(PROMPTS, settings)
    static = HfEngine(loaded.model, loaded.tokenizer, cache="static").generate(PROMPTS, settings)
    assert [r.to_dict(with_ids=True) for r in static] == [r.to_dict(with_ids=True) for r in dynamic]


def test_static_cache_reaches_generate(loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    real = loaded.model.generate

    def recording(*args, **kwargs):
        seen.append(kwargs.get("cache_implementation"))
        return real(*args, **kwargs)

    monkeypatch.setattr(loaded.model, "generate", recording)
    HfEngine(loaded.model, loaded.tokenizer, cache="static").generate(PROMPTS[:2], GenerationSettings(max_new_tokens=2))
    HfEngine(loaded.model, loaded.tokenizer).generate(PROMPTS[:2], GenerationSettings(max_new_tokens=2))
    assert seen == ["static", None]


def test_an_engine_other_than_the_default_marks_its_rows(loaded: LoadedModel) -> None:
    assert HfEngine(loaded.model, loaded.tokenizer).identity() == {}
    assert HfEngine(loaded.model, loaded.tokenizer, cache="static").identity() == {"engine": "hf", "hf_cache": "static"}
    # Rows record the phase's settings; the cache the engine chose is in the engine record, not there.
    assert "cache" not in GenerationSettings(cache="static").to_dict()


def test_a_pilot_on_another_engine_never_reuses_the_batches(tmp_path: Path, tiny_model_dir: Path) -> None:
    def fingerprint(hf_cache: str) -> str:
        context = write_context(tmp_path, "generate", tiny_model_dir, {**PILOT_PARAMS, "count": 4},
                                model_keys={"hf_cache": hf_cache})
        assert main(["generate", "--context", str(context)]) == 0
        run = tmp_path / "run"
        provenance = json.loads((run / "artifacts" / "generate" / "provenance.json").read_text())
        assert provenance["engine"]["name"] == "hf"
        return (run / "state" / "generate" / "batches" / "fingerprint.txt").read_text()

    assert fingerprint("dynamic") != fingerprint("static")


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here: its own tests run it")
def test_a_pilot_on_vllm_without_vllm_exits_2_before_loading(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    context = write_context(tmp_path, "generate", tiny_model_dir, PILOT_PARAMS, model_keys={"engine": "vllm"})
    assert main(["generate", "--context", str(context)]) == EXIT_INVALID_INPUT
    err = capsys.readouterr().err
    assert "vLLM is not installed" in err and "phasegate[vllm]" in err and "engine = 'hf'" in err
    assert not (tmp_path / "run" / "artifacts" / "generate" / "provenance.json").exists()


def test_vllm_refuses_int8_by_name() -> None:
    with pytest.raises(PhaseInputError, match="quantization = 'int8' is not available with engine = 'vllm'"):
        require_engine(ModelSpec(path="m", engine="vllm", quantization="int8"))


def test_agreement_matches_rows_by_id_and_compares_outputs_and_critic_labels() -> None:
    def row(i, response, label, margin=2.0):
        return {"id": i, "instruction": "Name a color.", "response": response,
                "instruction_critique": {"label": "A", "margin": 3.0},
                "pair_critique": {"label": label, "margin": margin}}

    a = [row("r0", "Red.", "A"), row("r1", "Blue.", "A"), row("r2", "Green.", "B")]
    b = [row("r2", "Green.", "B", -1.5), row("r1", "Blue!", "B"), row("r9", "x", "A")]
    found = pilot_agreement(a, b)
    assert found["rows"] == 2 and found["outputs"] == 0.5
    assert found["critiques"] == 4 and found["critic"] == 0.75
    assert found["max_margin_diff"] == pytest.approx(3.5)
