"""Batched generation on the real tiny model: ids equal sequential, stops, bucketing, seeds."""

from __future__ import annotations

import pytest

from phasegate.pipeline.generation.generate import (
    GenerationSettings,
    generate_texts,
    padding_waste,
    plan_batches,
    repetition_loop,
)
from phasegate.pipeline.generation.prompts import SEED_INSTRUCTIONS, response_prompt
from phasegate.pipeline.model.loader import LoadedModel, ModelSpec, load_clean

PROMPTS = [response_prompt(s) for s in SEED_INSTRUCTIONS] + [
    "Instruction: Hi\nResponse:",
    "1.",
    "Below is a list of things.\n\n1. A long, long, long, long, long first item\n2.",
    "x",
]


def _ids(results) -> list[tuple[int, ...]]:
    return [r.token_ids for r in results]


@pytest.mark.parametrize("arch_fixture", ["tiny_model_dir", "tiny_qwen_dir"])
def test_batched_greedy_ids_equal_sequential(
    arch_fixture: str, request: pytest.FixtureRequest
) -> None:
    folder = request.getfixturevalue(arch_fixture)
    loaded = load_clean(ModelSpec(path=str(folder)), checks=False)
    assert len(PROMPTS) == 16
    batched = generate_texts(
        loaded.model,
        loaded.tokenizer,
        PROMPTS,
        GenerationSettings(max_new_tokens=24, batch_size=16),
    )
    single = generate_texts(
        loaded.model, loaded.tokenizer, PROMPTS, GenerationSettings(max_new_tokens=24, batch_size=1)
    )
    assert _ids(batched) == _ids(single)


def test_bucketing_keeps_the_input_order(loaded: LoadedModel) -> None:
    settings = GenerationSettings(max_new_tokens=8, batch_size=4)
    bucketed = generate_texts(loaded.model, loaded.tokenizer, PROMPTS, settings)
    plain = generate_texts(
        loaded.model,
        loaded.tokenizer,
        PROMPTS,
        GenerationSettings(max_new_tokens=8, batch_size=4, bucket=False),
    )
    assert [r.prompt for r in bucketed] == PROMPTS
    assert _ids(bucketed) == _ids(plain)


def test_stop_string_ends_generation(loaded: LoadedModel) -> None:
    free = generate_texts(
        loaded.model, loaded.tokenizer, PROMPTS[:1], GenerationSettings(max_new_tokens=24)
    )[0]
    assert free.hit_token_limit and free.n_new_tokens == 24
    # A stop string the model is known to produce (greedy is deterministic): text of tokens 6-7.
    stop = loaded.tokenizer.decode(free.token_ids[:8])[
        len(loaded.tokenizer.decode(free.token_ids[:6])) :
    ]
    assert stop.strip()
    stopped = generate_texts(
        loaded.model,
        loaded.tokenizer,
        PROMPTS[:1],
        GenerationSettings(max_new_tokens=24, stop=(stop,)),
    )[0]
    assert stopped.stopped_by_stop_string and not stopped.hit_token_limit
    assert stopped.n_new_tokens <= 8 and stopped.token_ids == free.token_ids[: stopped.n_new_tokens]
    assert stop in stopped.raw_text and stop not in stopped.text


def test_min_new_tokens_and_limit(loaded: LoadedModel) -> None:
    results = generate_texts(
        loaded.model,
        loaded.tokenizer,
        PROMPTS[:4],
        GenerationSettings(max_new_tokens=6, min_new_tokens=6),
    )
    assert all(r.n_new_tokens == 6 and r.hit_token_limit and not r.stopped_by_eos for r in results)


def test_sampling_is_seeded(loaded: LoadedModel) -> None:
    def sample(seed: int):
        settings = GenerationSettings(
            max_new_tokens=12, temperature=1.0, top_p=0.9, seed=seed, batch_size=8
        )
        return _ids(generate_texts(loaded.model, loaded.tokenizer, PROMPTS, settings))

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_plan_batches_and_padding_waste() -> None:
    lengths = [1, 9, 2, 8, 3, 7]
    assert plan_batches(lengths, 2, bucket=False) == [[0, 1], [2, 3], [4, 5]]
    bucketed = plan_batches(lengths, 2)
    assert bucketed == [[1, 3], [5, 4], [2, 0]]
    assert padding_waste(lengths, bucketed) < padding_waste(
        lengths, plan_batches(lengths, 2, bucket=False)
    )
    assert padding_waste([4, 4], [[0, 1]]) == 0.0
    assert padding_waste([], []) == 0.0
    with pytest.raises(ValueError):
        plan_batches(lengths, 0)


def test_repetition_loop() -> None:
    assert repetition_loop([5] * 12)
    assert repetition_loop([1, 2, 3, 4] + [7, 8, 9] * 5)
    assert not repetition_loop(list(range(40)))
    assert not repetition_loop([5] * 11)  # too short to call it a loop


def test_result_serialises_without_ids_by_default(loaded: LoadedModel) -> None:
    result = generate_texts(
        loaded.model, loaded.tokenizer, ["x"], GenerationSettings(max_new_tokens=3)
    )[0]
    assert "token_ids" not in result.to_dict()
    assert result.to_dict(with_ids=True)["token_ids"] == list(result.token_ids)
