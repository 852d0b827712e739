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
from phasegate.pipeline.model.loader import LoadedModel, ModelSpec, load_clean
from phasegate.pipeline.tokenizer import CleanTokenizer

# Completions a chat-tuned model would give to the sentinel instructions, in order.
FOLLOWING = [
    "Paris.",
    "Red, blue, yellow.",
    "12",
    "CAT",
    "Gracias.",
    "OK",
    "rats",
    "Cold.",
    "1, 2, 3, 4, 5",
    "Yes, ice is cold.",
]


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


class _BosAddingTokenizer(CleanTokenizer):
    """A broken wrapper that prepends BOS, as a tokenizer's default mode does."""

    def encode(self, text: str) -> list[int]:
        return [self.hf_tokenizer.bos_token_id, *super().encode(text)]


def test_a_wrapper_that_adds_tokens_fails_the_delta_check(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    broken = _BosAddingTokenizer(AutoTokenizer.from_pretrained(tiny_model_dir))
    result = check_token_delta(broken, ["Instruction: hi\nResponse:"])
    assert not result.passed
    mismatch = result.evidence["mismatches"][0]
    assert (mismatch["path"], mismatch["first_difference"]) == ("encode", 0)


def test_sentinel_scoring_recognises_instruction_following() -> None:
    details = score_completions(SENTINEL_CASES, FOLLOWING)
    assert [d["follows"] for d in details] == [True] * len(SENTINEL_CASES)
    garbage = score_completions(SENTINEL_CASES, ["the of and"] * len(SENTINEL_CASES))
    assert not any(d["follows"] for d in garbage)


def test_sentinel_over_max_fails_with_evidence() -> None:
    one_right = ["Paris."] + ["xyz"] * (len(SENTINEL_CASES) - 1)
    details = score_completions(SENTINEL_CASES, one_right)
    assert check_sentinel(details, sentinel_max=0.7).passed
    result = check_sentinel(details, sentinel_max=0.0)
    assert not result.passed
    assert result.evidence["follow_rate"] == pytest.approx(0.1)
    assert "not a base model" in result.summary
    assert not check_sentinel(score_completions(SENTINEL_CASES, FOLLOWING), 0.7).passed


def test_sentinel_completion_is_cut_at_the_next_turn() -> None:
    details = score_completions(SENTINEL_CASES[:1], [" Rome.\nInstruction: Paris"])
    assert details[0] == {**details[0], "completion": "Rome.", "follows": False}


def test_heldout_cases_differ_from_sentinel_cases() -> None:
    sentinel = {c.instruction for c in SENTINEL_CASES}
    assert len(SENTINEL_CASES) == 10 and not sentinel & {c.instruction for c in HELDOUT_CASES}


def test_strict_load_of_a_contaminated_tokenizer_raises(contaminated_model_dir: Path) -> None:
    with pytest.raises(ContaminationError, match="template_markers") as caught:
        load_clean(ModelSpec(path=str(contaminated_model_dir)))
    checks = {c["name"]: c for c in caught.value.evidence["checks"]}
    hits = checks["template_markers"]["evidence"]["special_id_hits"]
    assert {hit["token"] for hit in hits} == {"Response:"}
