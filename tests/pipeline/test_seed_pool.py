"""The instruction seed pool: `seed_file` replaces the built-in examples; a bad file is invalid input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phasegate.pipeline.data.pilot import GenerateParams, PilotBatch
from phasegate.pipeline.data.shards import ShardJob, compute_shard, plan_shards
from phasegate.pipeline.engines import engine
from phasegate.pipeline.engines.engine import HfEngine
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.generation.prompts import (
    INSTRUCTION_LIST_HEADER,
    SEED_INSTRUCTIONS,
    load_seed_pool,
)
from phasegate.pipeline.model.spec import ModelSpec
from tests.pipeline.test_phases import run_child, write_context

POOL = ("Name a red fruit.", "Count to three in French.", "Spell the word cat backwards.")
PARAMS = {"count": 2, "batch_size": 2, "max_new_tokens": 2, "instruction_max_new_tokens": 4}


def test_a_text_file_has_one_instruction_a_line(tmp_path: Path) -> None:
    path = tmp_path / "seeds.txt"
    path.write_text("Name a red fruit.\n\n   Count to   three in French.  \n")
    assert load_seed_pool(path) == ("Name a red fruit.", "Count to three in French.")


def test_a_jsonl_file_holds_strings_or_instruction_objects(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_text('"Name a red fruit."\n\n{"instruction": "Count to\\nthree.", "source": "x"}\n')
    assert load_seed_pool(path) == ("Name a red fruit.", "Count to three.")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("seeds.jsonl", '"ok"\n{"instruction": "ok"\n', r"'seeds.jsonl' line 2 is not JSON"),
        ("seeds.jsonl", '"ok"\n\n{"prompt": "x"}\n', r"'seeds.jsonl' line 3 must be a JSON string"),
        ("seeds.jsonl", "42\n", r"line 1 must be a JSON string or an object"),
        ("seeds.txt", "\n  \n", r"'seeds.txt' \(.*seeds.txt\) has no instructions"),
        ("missing.txt", None, r"'missing.txt' \(.*missing.txt\) cannot be read: No such file"),
    ],
)
def test_a_bad_seed_file_names_the_file_and_line(tmp_path: Path, name, text, message) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(PhaseInputError, match=message):
        load_seed_pool(tmp_path / name, name)


@pytest.fixture
def few_shot_prompts(monkeypatch) -> list[str]:
    """The instruction prompts the pilot's batches send to the model (the real model answers)."""
    prompts: list[str] = []
    real = engine.generate_texts

    def recording(model, tok, batch, settings):
        prompts.extend(p for p in batch if p.startswith(INSTRUCTION_LIST_HEADER))
        return real(model, tok, batch, settings)

    monkeypatch.setattr(engine, "generate_texts", recording)
    return prompts


def drawn_from_pool(prompts: list[str]) -> bool:
    """Every prompt shows the whole (small) pool and no built-in example."""
    return all(all(s in p for s in POOL) and not any(s in p for s in SEED_INSTRUCTIONS)
               for p in prompts)


def test_the_pilot_prompts_draw_only_from_the_pool(loaded, few_shot_prompts) -> None:
    PilotBatch(HfEngine(loaded.model, loaded.tokenizer), GenerateParams(**PARAMS), 0, lambda *_: None, POOL).run(0, 2)
    assert len(few_shot_prompts) == 2 and drawn_from_pool(few_shot_prompts)


def test_a_scale_shard_draws_from_the_pool_in_its_job(tmp_path, tiny_model_dir, few_shot_prompts) -> None:
    job = ShardJob(model=ModelSpec(path=str(tiny_model_dir)), model_base=".",
                   params=GenerateParams(**PARAMS), seed=0, fingerprint="f", shard_dir=str(tmp_path),
                   shards=plan_shards(2, 1, 0), seed_pool=list(POOL))
    rows, _ = compute_shard(job, 0)
    assert len(rows) == 2 and len(few_shot_prompts) == 2 and drawn_from_pool(few_shot_prompts)


def test_the_pilot_phase_reads_the_seed_file_from_the_session_folder(tmp_path, tiny_model_dir) -> None:
    (tmp_path / "seeds.txt").write_text("\n".join(POOL) + "\n")
    context = write_context(tmp_path, "generate", tiny_model_dir, {**PARAMS, "seed_file": "seeds.txt"})
    manifest = tmp_path / "run" / "artifacts" / "generate" / "session_manifest.json"

    def batches() -> dict:
        result = run_child("generate", context, tmp_path / "events.jsonl")
        assert result.returncode == 0, result.stderr
        return json.loads(manifest.read_text())["batches"]

    assert batches() == {"generated": [0], "reused": []}
    assert batches() == {"generated": [], "reused": [0]}
    (tmp_path / "seeds.txt").write_text("Name a blue fruit.\n")  # other examples: other rows
    assert batches() == {"generated": [0], "reused": []}


def test_a_malformed_seed_file_stops_the_phase_as_invalid_input(tmp_path, tiny_model_dir) -> None:
    (tmp_path / "seeds.jsonl").write_text('"Name a red fruit."\nName a blue fruit.\n')
    context = write_context(tmp_path, "generate", tiny_model_dir, {**PARAMS, "seed_file": "seeds.jsonl"})
    result = run_child("generate", context, tmp_path / "events.jsonl")
    assert result.returncode == 2
    assert "seed_file 'seeds.jsonl' line 2 is not JSON" in result.stderr
    assert "Traceback" not in result.stderr
