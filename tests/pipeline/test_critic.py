"""The single-token A/B critic: batched scores, with or without the prefix cache, equal per-item scores."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from phasegate.pipeline.errors import PipelineError
from phasegate.pipeline.generation.critic import (
    Critique,
    answer_token_ids,
    score_ab,
    score_ab_plain,
)
from phasegate.pipeline.generation.prefix_cache import (
    MIN_SHARED_PREFIX,
    PlannedBatch,
    common_prefix_len,
    plan_prefix_batches,
)
from phasegate.pipeline.generation.prompts import (
    INSTRUCTION_CRITIC_RUBRIC,
    SEED_INSTRUCTIONS,
    instruction_critic_prompt,
    pair_critic_prompt,
)
from phasegate.pipeline.model.loader import LoadedModel, ModelSpec, load_clean
from tests.pipeline.conftest import forward_inputs

INSTRUCTION_PROMPTS = [instruction_critic_prompt(s) for s in SEED_INSTRUCTIONS]
PAIR_PROMPTS = [
    pair_critic_prompt(s, "Apple. " * (i + 1)) for i, s in enumerate(SEED_INSTRUCTIONS[:6])
]
PROMPTS = [
    *INSTRUCTION_PROMPTS,
    pair_critic_prompt("Name a fruit.", "Apple."),
    pair_critic_prompt("Name a fruit.", "A very long answer " * 10),
    "Grade:",
]


@pytest.fixture(scope="module")
def qwen(tiny_qwen_dir: Path) -> LoadedModel:
    """The tiny Qwen2 model (its chat special tokens fail the contamination checks by design)."""
    return load_clean(ModelSpec(path=str(tiny_qwen_dir)), checks=False)


@pytest.fixture(params=["llama", "qwen2"])
def model(request: pytest.FixtureRequest) -> LoadedModel:
    """Each tiny architecture in turn."""
    return request.getfixturevalue("loaded" if request.param == "llama" else "qwen")


def full_prompt_scores(model: object, tok, prompt: str) -> tuple[float, float]:
    """logp(A), logp(B) from one unpadded forward over the whole prompt: the reference."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tok.encode_sequence(prompt)])).logits[0, -1]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    a, b = (list(answer_token_ids(tok, letter)) for letter in "AB")
    return logprobs[a].logsumexp(-1).item(), logprobs[b].logsumexp(-1).item()


def assert_match_reference(found: list[Critique], model: object, tok, prompts: list[str]) -> None:
    """Every critique within 1e-4 of the full-prompt reference."""
    for critique, prompt in zip(found, prompts, strict=True):
        logp_a, logp_b = full_prompt_scores(model, tok, prompt)
        assert critique.logp_a == pytest.approx(logp_a, abs=1e-4)
        assert critique.logp_b == pytest.approx(logp_b, abs=1e-4)


def forward_widths(model: object, run) -> list[tuple[int, int]]:
    """The (batch, tokens) shape of every forward the model ran during `run()`."""
    return [tuple(call["input_ids"].shape) for call in forward_inputs(model, run)]


@pytest.mark.parametrize("prompts", [INSTRUCTION_PROMPTS, PAIR_PROMPTS, PROMPTS])
@pytest.mark.parametrize("batch_size", [16, 5, 1])
def test_scores_equal_full_prompt_forwards(
    model: LoadedModel, prompts: list[str], batch_size: int
) -> None:
    tok = model.tokenizer
    for score in (score_ab, score_ab_plain):
        found = score(model.model, tok, prompts, batch_size=batch_size)
        assert_match_reference(found, model.model, tok, prompts)


def test_the_rubric_runs_once_per_batch(model: LoadedModel) -> None:
    tok = model.tokenizer
    rubric = len(tok.encode_sequence(INSTRUCTION_CRITIC_RUBRIC))
    longest = max(len(tok.encode_sequence(p)) for p in INSTRUCTION_PROMPTS)
    shapes = forward_widths(
        model.model, lambda: score_ab(model.model, tok, INSTRUCTION_PROMPTS, batch_size=16)
    )
    (one, prefix), (rows, suffix) = shapes
    assert one == 1 and prefix >= rubric
    assert rows == len(INSTRUCTION_PROMPTS) and prefix + suffix == longest
    plain = forward_widths(
        model.model, lambda: score_ab_plain(model.model, tok, INSTRUCTION_PROMPTS, batch_size=16)
    )
    assert plain == [(len(INSTRUCTION_PROMPTS), longest)]


def test_prompts_without_a_useful_shared_prefix_take_the_plain_pass(loaded: LoadedModel) -> None:
    tok = loaded.tokenizer
    prompts = [f"{s}\nGrade:" for s in SEED_INSTRUCTIONS]
    shapes = forward_widths(loaded.model, lambda: score_ab(loaded.model, tok, prompts))
    assert shapes == [(len(prompts), max(len(tok.encode_sequence(p)) for p in prompts))]
    assert_match_reference(score_ab(loaded.model, tok, prompts), loaded.model, tok, prompts)


def test_repeated_and_nested_prompts(model: LoadedModel) -> None:
    # A prompt that is a prefix of another, and duplicates: each row keeps one token to run.
    base = INSTRUCTION_PROMPTS[0]
    prompts = [base, base, base + " Yes", INSTRUCTION_PROMPTS[1]]
    found = score_ab(model.model, model.tokenizer, prompts)
    assert_match_reference(found, model.model, model.tokenizer, prompts)
    assert found[0] == found[1]


def test_a_sliding_window_model_matches_too(qwen: LoadedModel, tiny_qwen_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    sliding = AutoModelForCausalLM.from_pretrained(
        tiny_qwen_dir,
        use_sliding_window=True,
        sliding_window=32,  # far shorter than the rubric, so the window truly cuts
        max_window_layers=0,
        layer_types=["sliding_attention", "full_attention"],
    ).eval()
    found = score_ab(sliding, qwen.tokenizer, INSTRUCTION_PROMPTS)
    assert_match_reference(found, sliding, qwen.tokenizer, INSTRUCTION_PROMPTS)
    # The window changes the scores, so the comparison above is not a vacuous one.
    unwindowed = score_ab(qwen.model, qwen.tokenizer, INSTRUCTION_PROMPTS[:1])[0]
    assert found[0].logp_a != pytest.approx(unwindowed.logp_a, abs=1e-4)


def test_the_plan_shares_only_where_it_saves_positions() -> None:
    rubric = list(range(100, 140))
    kind_a = [rubric + [1] * n for n in (3, 5, 4)]
    kind_b = [[7] * 30 + [2] * n for n in (2, 6)]
    rows = kind_a + kind_b
    # Each kind side by side, longest first; a lone row gains nothing from a cache.
    assert plan_prefix_batches(rows, 2, MIN_SHARED_PREFIX) == [
        PlannedBatch((4, 3), 31),
        PlannedBatch((1, 2), 43),
        PlannedBatch((0,), 0),
    ]
    assert all(b.prefix_len == 0 for b in plan_prefix_batches(rows, 3, None))
    # Too short a shared prefix: plain length-bucketed batches.
    short = [[9] * 4 + [n] * n for n in (1, 2, 3)]
    assert plan_prefix_batches(short, 16, MIN_SHARED_PREFIX) == [PlannedBatch((2, 1, 0), 0)]
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2 and common_prefix_len([], [1]) == 0
    assert plan_prefix_batches([], 16, MIN_SHARED_PREFIX) == []


def test_small_batches_give_the_same_scores(loaded: LoadedModel) -> None:
    big = score_ab(loaded.model, loaded.tokenizer, PROMPTS, batch_size=16)
    small = score_ab(loaded.model, loaded.tokenizer, PROMPTS, batch_size=3)
    assert [c.margin for c in small] == pytest.approx([c.margin for c in big], abs=1e-4)


def test_both_spellings_of_each_letter_are_combined(loaded: LoadedModel) -> None:
    ids_a = answer_token_ids(loaded.tokenizer, "A")
    assert len(ids_a) == 2 and len(answer_token_ids(loaded.tokenizer, "B")) == 2
    critique = score_ab(loaded.model, loaded.tokenizer, PROMPTS[:1])[0]
    assert critique.logp_a <= 0 and critique.logp_b <= 0
    assert critique.margin == pytest.approx(critique.logp_a - critique.logp_b)
    assert math.isfinite(critique.margin)


def test_label_and_confidence_follow_the_margin(loaded: LoadedModel) -> None:
    for critique in score_ab(loaded.model, loaded.tokenizer, PROMPTS, min_margin=0.0):
        assert critique.confident and critique.accepted == (critique.margin > 0)
    assert not any(
        c.confident for c in score_ab(loaded.model, loaded.tokenizer, PROMPTS, min_margin=1e9)
    )
    as_dict = Critique("A", -0.1, -3.7, 3.6, True).to_dict()
    assert as_dict == {
        "label": "A",
        "logp_a": -0.1,
        "logp_b": -3.7,
        "margin": 3.6,
        "confident": True,
        "accepted": True,
    }


def test_empty_input(loaded: LoadedModel) -> None:
    assert score_ab(loaded.model, loaded.tokenizer, []) == []
    with pytest.raises(PipelineError, match=r"prompts \[1\] are empty"):
        score_ab(loaded.model, loaded.tokenizer, ["Grade:", ""])
