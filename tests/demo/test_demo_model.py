"""The demo model: trained once, cached by corpus and code, really emitting the completion format."""

from __future__ import annotations

import json
import time

from phasegate.demo.model import (
    INFO_FILE,
    build_contaminated_model,
    build_demo_model,
    cache_key,
)
from phasegate.pipeline.model.loader import load_clean
from phasegate.pipeline.model.spec import ModelSpec


def test_a_second_build_reuses_the_cached_model(demo_model, demo_cache):
    weights = demo_model / "model.safetensors"
    before = weights.stat().st_mtime_ns
    started = time.monotonic()
    assert build_demo_model(demo_cache) == demo_model
    assert time.monotonic() - started < 5 and weights.stat().st_mtime_ns == before
    assert demo_model.name == cache_key()
    record = json.loads((demo_model / INFO_FILE).read_text())
    assert record["settings"]["steps"] > 0 and record["final_loss"] < 1.5


def test_the_trained_model_passes_its_load_checks_and_ends_its_answers(demo_model):
    from phasegate.pipeline.generation.generate import GenerationSettings, generate_texts
    from phasegate.pipeline.generation.prompts import RESPONSE_STOPS, response_prompt

    loaded = load_clean(ModelSpec(path=str(demo_model)), strict=False)
    assert not loaded.failed_checks
    prompts = [response_prompt(i) for i in ("Name three colors.", "Explain a magnet in one sentence.")]
    results = generate_texts(loaded.model, loaded.tokenizer, prompts,
                             GenerationSettings(max_new_tokens=60, stop=RESPONSE_STOPS))
    assert all(r.text and not r.hit_token_limit and not r.leakage for r in results)


def test_the_contaminated_variant_fails_the_template_check(demo_model):
    variant = build_contaminated_model(demo_model)
    loaded = load_clean(ModelSpec(path=str(variant)), strict=False)
    assert "template_markers" in [c.name for c in loaded.failed_checks]
    assert build_contaminated_model(demo_model) == variant  # cached too
