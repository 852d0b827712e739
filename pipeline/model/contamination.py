"""Contamination checks: chat markers, token-id delta, and the instruction-following sentinel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from phasegate.pipeline.generation.prompts import (
    SEED_INSTRUCTIONS,
    chat_markers_in,
    instruction_critic_prompt,
    instruction_generation_prompt,
    pair_critic_prompt,
    response_prompt,
)
from phasegate.pipeline.model.following import (
    EXPECTED_CLEAN_BASE_RATE,
    SENTINEL_CASES,
    follow_rate,
    run_sentinel,
    sentinel_prompt,
)
from phasegate.pipeline.tokenizer import declared_bos_convention

if TYPE_CHECKING:
    from phasegate.pipeline.tokenizer import CleanTokenizer

_MAX_LISTED = 20  # evidence lists are capped so a bad run cannot write megabytes of JSON


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one contamination check and the evidence behind it."""

    name: str
    passed: bool
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values."""
        return asdict(self)


def audit_prompts() -> list[str]:
    """One prompt of every shape the pipeline sends to a model, for the load-time checks."""
    instruction, response = SEED_INSTRUCTIONS[0], "Brazil, Peru and Chile."
    return [
        response_prompt(instruction),
        instruction_generation_prompt(0),
        instruction_critic_prompt(instruction),
        pair_critic_prompt(instruction, response),
        *(sentinel_prompt(case) for case in SENTINEL_CASES),
    ]


def _excerpt(text: str) -> str:
    """The start of a prompt, for evidence."""
    return text if len(text) <= 80 else text[:77] + "..."


def _unexpected_special_ids(tok: CleanTokenizer, text: str) -> list[int]:
    """Special ids in `text` encoded as a whole prompt, except the one leading BOS the model expects."""
    ids = tok.encode_sequence(text)
    return [t for t in ids[len(tok.sequence_start()) :] if t in tok.special_ids]


def check_template_markers(tok: CleanTokenizer, prompts: Sequence[str]) -> CheckResult:
    """Fail if any prompt holds a chat-template marker or a special token id beyond one leading BOS."""
    marker_hits, id_hits = [], []
    for index, text in enumerate(prompts):
        for marker in chat_markers_in(text):
            marker_hits.append({"prompt": index, "marker": marker, "excerpt": _excerpt(text)})
        for token_id in sorted(set(_unexpected_special_ids(tok, text))):
            id_hits.append(
                {"prompt": index, "token_id": token_id, "token": tok.token_text(token_id)}
            )
    passed = not marker_hits and not id_hits
    summary = (
        f"no chat marker or special token in {len(prompts)} prompts"
        if passed
        else f"{len(marker_hits)} chat marker(s) and {len(id_hits)} special token id(s) in prompts"
    )
    return CheckResult(
        name="template_markers",
        passed=passed,
        summary=summary,
        evidence={
            "prompts_checked": len(prompts),
            "marker_hits": marker_hits[:_MAX_LISTED],
            "special_id_hits": id_hits[:_MAX_LISTED],
            "special_ids": sorted(tok.special_ids),
            "leading_bos_allowed": tok.bos_token,
        },
    )


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    """The first position where two id lists differ."""
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def check_token_delta(tok: CleanTokenizer, prompts: Sequence[str]) -> CheckResult:
    """Fail unless the wrapper (single and batched) adds nothing but the model's own BOS to the raw ids."""
    hf = tok.hf_tokenizer
    batch = tok.encode_batch(list(prompts)) if prompts else None
    # BOS only where the tokenizer's own default starts sequences with it (judged here, not by the
    # wrapper); never EOS or anything else its default mode might add.
    start = [hf.bos_token_id] if declared_bos_convention(hf) else []
    mismatches = []
    for index, text in enumerate(prompts):
        # The reference encoding: the tokenizer itself, asked to add nothing, after that BOS.
        raw = start + hf(text, add_special_tokens=False)["input_ids"]
        row, mask = batch["input_ids"][index], batch["attention_mask"][index]
        for path, ids in (
            ("encode_sequence", tok.encode_sequence(text)),
            ("encode_batch", row[mask.bool()].tolist()),
        ):
            if ids != raw:
                mismatches.append(
                    {
                        "prompt": index,
                        "path": path,
                        "wrapper_len": len(ids),
                        "raw_len": len(raw),
                        "first_difference": _first_difference(ids, raw),
                    }
                )
    default_extra: list[str] = []
    if prompts:
        default = hf(prompts[0])["input_ids"]
        raw0 = hf(prompts[0], add_special_tokens=False)["input_ids"]
        default_extra = [tok.token_text(t) for t in default if t not in raw0]
    passed = not mismatches
    summary = (
        f"wrapper ids equal raw ids (after BOS: {tok.bos_token or 'none'}) for {len(prompts)} "
        "prompts (single and batched)"
        if passed
        else f"{len(mismatches)} encoding(s) differ from the raw text's ids"
    )
    return CheckResult(
        name="token_delta",
        passed=passed,
        summary=summary,
        evidence={
            "prompts_checked": len(prompts),
            "mismatches": mismatches[:_MAX_LISTED],
            "tokens_default_mode_would_add": default_extra,
            "bos_added": tok.adds_bos,
            "bos_token": tok.bos_token,
        },
    )


def check_sentinel(details: Sequence[dict[str, Any]], sentinel_max: float) -> CheckResult:
    """Fail when the base model follows more than `sentinel_max` of the sentinel instructions."""
    rate = follow_rate(details)
    passed = rate <= sentinel_max
    verdict = "within" if passed else "above"
    summary = f"sentinel follow rate {rate:.2f} is {verdict} the maximum {sentinel_max:.2f}" + (
        "" if passed else ": a chat template leaked or the model is not a base model"
    )
    return CheckResult(
        name="sentinel",
        passed=passed,
        summary=summary,
        evidence={
            "follow_rate": rate,
            "sentinel_max": sentinel_max,
            "expected_clean_base_range": list(EXPECTED_CLEAN_BASE_RATE),
            "prompt_format": "the bare instruction and a newline; no completion scaffold, no template",
            "scoring": "greedy answer up to EOS, a chat marker or a blank line; it follows when the "
            "whole answer matches the case's rule",
            "cases": list(details),
        },
    )


def run_checks(
    model: Any, tok: CleanTokenizer, *, sentinel_max: float, prompts: Sequence[str] | None = None
) -> tuple[CheckResult, ...]:
    """All three checks on `prompts` (default: the pipeline's prompt shapes) and the sentinel."""
    prompts = audit_prompts() if prompts is None else list(prompts)
    sentinel = check_sentinel(run_sentinel(model, tok), sentinel_max)
    return (check_template_markers(tok, prompts), check_token_delta(tok, prompts), sentinel)
