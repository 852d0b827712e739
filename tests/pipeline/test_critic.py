"""The single-token A/B critic: batched scores equal per-item scores."""

from __future__ import annotations

import math

import pytest

from phasegate.pipeline.critic import Critique, answer_token_ids, score_ab
from phasegate.pipeline.loader import LoadedModel
from phasegate.pipeline.prompts import (
    SEED_INSTRUCTIONS,
    instruction_critic_prompt,
    pair_critic_prompt,
)

PROMPTS = [instruction_critic_prompt(s) for s in SEED_INSTRUCTIONS] + [
    pair_critic_prompt("Name a fruit.", "Apple."),
    pair_critic_prompt("Name a fruit.", "A very long answer " * 10),
    "Grade:",
]


def test_batched_scores_equal_per_item_scores(loaded: LoadedModel) -> None:
    batched = score_ab(loaded.model, loaded.tokenizer, PROMPTS, batch_size=16)
    single = [score_ab(loaded.model, loaded.tokenizer, [p])[0] for p in PROMPTS]
    for b, s in zip(batched, single, strict=True):
        assert b.logp_a == pytest.approx(s.logp_a, abs=1e-4)
        assert b.logp_b == pytest.approx(s.logp_b, abs=1e-4)
        assert b.label == s.label or abs(s.margin) < 1e-4


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
