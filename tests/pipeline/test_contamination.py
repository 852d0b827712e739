"""The three contamination checks, each with passing and failing evidence."""

from __future__ import annotations

from pathlib import Path

import pytest

from phasegate.pipeline.errors import ContaminationError
from phasegate.pipeline.model.contamination import (
    audit_prompts,
    check_sentinel,
    check_template_markers,
    check_token_delta,
)
from phasegate.pipeline.model.following import HELDOUT_CASES, SENTINEL_CASES, score_completions
from phasegate.pipeline.model.following import score_sentinel as _score_sentinel
from phasegate.pipeline.model.loader import LoadedModel, ModelSpec, load_clean
from phasegate.pipeline.tokenizer import CleanTokenizer

# Answers a chat-tuned model would give to the sentinel instructions, in order.
FOLLOWING = [
    "OK",
    "CAT",
    "red; green; blue",
    "Vast, blue.",
    "blue blue blue",
    "1, 2, 3, 4, 5",
    "Z",
    "[apple]",
    "Yes.",
    "42",
    "Hello\nWorld",
    "goodbye",
]


def score_sentinel(answers: list[str]) -> list[dict]:
    """Sentinel evidence for `answers` (prompt and output left empty: only the scoring is tested)."""
    return _score_sentinel([""] * len(answers), answers, answers)


def test_clean_prompts_pass_check_one(loaded: LoadedModel) -> None:
    result = check_template_markers(loaded.tokenizer, audit_prompts())
    assert result.passed and result.evidence["marker_hits"] == []


def test_im_start_in_a_prompt_trips_check_one(loaded: LoadedModel) -> None:
    prompts = ["Instruction: hi\nResponse:", "<|im_start|>user\nhello<|im_end|>"]
    result = check_template_markers(loaded.tokenizer, prompts)
    assert not result.passed
    assert {"prompt": 1, "marker": "<|im_start|>"}.items() <= result.evidence["marker_hits"][
        0
    ].items()
    tokens = {hit["token"] for hit in result.evidence["special_id_hits"]}
    assert tokens == {"<|im_start|>", "<|im_end|>"}


@pytest.mark.parametrize(
    "marker", ["[INST]", "<|start_header_id|>", "<start_of_turn>", "<|eot_id|>"]
)
def test_other_families_markers_trip_check_one(loaded: LoadedModel, marker: str) -> None:
    assert not check_template_markers(loaded.tokenizer, [f"{marker} Name a fruit."]).passed


def test_wrapper_ids_equal_raw_ids(loaded: LoadedModel) -> None:
    result = check_token_delta(loaded.tokenizer, audit_prompts())
    assert result.passed
    assert result.evidence["tokens_default_mode_would_add"] == ["<s>"]
    assert (result.evidence["bos_added"], result.evidence["bos_token"]) == (True, "<s>")


def test_one_leading_bos_passes_check_one_but_a_second_bos_trips_it(loaded: LoadedModel) -> None:
    tok = loaded.tokenizer
    assert tok.encode_sequence("Instruction: hi")[0] == tok.hf_tokenizer.bos_token_id
    assert check_template_markers(tok, ["Instruction: hi\nResponse:"]).passed
    result = check_template_markers(tok, ["<s>Instruction: hi\nResponse:"])
    assert not result.passed
    assert [hit["token"] for hit in result.evidence["special_id_hits"]] == ["<s>"]


class _EosAddingTokenizer(CleanTokenizer):
    """A broken wrapper that ends every sequence with EOS, as some tokenizers' default mode does."""

    def encode_sequence(self, text: str) -> list[int]:
        return [*super().encode_sequence(text), self.hf_tokenizer.eos_token_id]


class _DoubleBosTokenizer(CleanTokenizer):
    """A broken wrapper that adds BOS on top of the tokenizer's own BOS."""

    def encode_sequence(self, text: str) -> list[int]:
        return [self.hf_tokenizer.bos_token_id, *super().encode_sequence(text)]


@pytest.mark.parametrize("wrapper", [_EosAddingTokenizer, _DoubleBosTokenizer])
def test_a_wrapper_that_adds_more_than_bos_fails_the_delta_check(
    tiny_model_dir: Path, wrapper: type[CleanTokenizer]
) -> None:
    from transformers import AutoTokenizer

    broken = wrapper(AutoTokenizer.from_pretrained(tiny_model_dir))
    prompt = "Instruction: hi\nResponse:"
    # The EOS goes after BOS and the text's ids; the second BOS right after the first.
    at = len(broken.encode(prompt)) + 1 if wrapper is _EosAddingTokenizer else 1
    result = check_token_delta(broken, [prompt])
    assert not result.passed
    found = {m["path"]: m["first_difference"] for m in result.evidence["mismatches"]}
    assert found == {"encode_sequence": at, "encode_batch": at}


def test_sentinel_scoring_recognises_instruction_following() -> None:
    details = score_sentinel(FOLLOWING)
    assert [d["follows"] for d in details] == [True] * len(SENTINEL_CASES)
    garbage = score_sentinel(["the of and"] * len(SENTINEL_CASES))
    assert not any(d["follows"] for d in garbage)


def test_sentinel_over_max_fails_with_evidence() -> None:
    two_right = FOLLOWING[:2] + ["xyz"] * (len(SENTINEL_CASES) - 2)
    details = score_sentinel(two_right)
    assert check_sentinel(details, sentinel_max=0.7).passed
    result = check_sentinel(details, sentinel_max=0.0)
    assert not result.passed
    assert result.evidence["follow_rate"] == pytest.approx(2 / len(SENTINEL_CASES))
    assert result.evidence["expected_clean_base_range"] == [0.10, 0.30]
    assert "not a base model" in result.summary
    assert not check_sentinel(score_sentinel(FOLLOWING), 0.7).passed


def test_heldout_completion_is_cut_at_the_next_turn() -> None:
    details = score_completions(HELDOUT_CASES[:1], [" Saturn.\nInstruction: Jupiter"])
    assert details[0] == {**details[0], "completion": "Saturn.", "follows": False}


def test_heldout_cases_differ_from_sentinel_cases() -> None:
    sentinel = {c.instruction for c in SENTINEL_CASES}
    assert len(SENTINEL_CASES) >= 10 and not sentinel & {c.instruction for c in HELDOUT_CASES}


def test_strict_load_of_a_contaminated_tokenizer_raises(contaminated_model_dir: Path) -> None:
    with pytest.raises(ContaminationError, match="template_markers") as caught:
        load_clean(ModelSpec(path=str(contaminated_model_dir)))
    checks = {c["name"]: c for c in caught.value.evidence["checks"]}
    hits = checks["template_markers"]["evidence"]["special_id_hits"]
    assert {hit["token"] for hit in hits} == {"Response:"}
