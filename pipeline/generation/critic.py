"""Single-token A/B critic: log-probabilities of "A" and "B" as the next token, no sampling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from phasegate.pipeline.errors import PipelineError
from phasegate.pipeline.generation.prefix_cache import MIN_SHARED_PREFIX, last_logprobs

if TYPE_CHECKING:
    from phasegate.pipeline.tokenizer import CleanTokenizer

DEFAULT_MIN_MARGIN = 1.0


@dataclass(frozen=True)
class Critique:
    """One A/B judgement: A is the rubric's "good" answer."""

    label: str
    logp_a: float
    logp_b: float
    margin: float
    confident: bool

    @property
    def accepted(self) -> bool:
        """Whether the critic chose A."""
        return self.label == "A"

    def to_dict(self) -> dict[str, Any]:
        """The judgement as JSON-ready values."""
        return {**asdict(self), "accepted": self.accepted}


def answer_token_ids(tok: CleanTokenizer, letter: str) -> tuple[int, ...]:
    """The single-token spellings of `letter`, with and without a leading space."""
    ids = []
    for variant in (letter, f" {letter}"):
        encoded = tok.encode(variant)  # the next token after a prompt: a piece, no BOS
        if len(encoded) == 1 and encoded[0] not in ids:
            ids.append(encoded[0])
    if not ids:
        raise PipelineError(
            f"the tokenizer has no single token for {letter!r} or ' {letter}', so the A/B critic "
            "cannot score it; use a model whose vocabulary holds the letters as tokens"
        )
    return tuple(ids)


def judge(logp_a: float, logp_b: float, min_margin: float) -> Critique:
    """The judgement for one pair of letter log-probabilities (from any engine)."""
    margin = logp_a - logp_b
    return Critique(
        label="A" if margin > 0 else "B",
        logp_a=logp_a,
        logp_b=logp_b,
        margin=margin,
        confident=abs(margin) >= min_margin,
    )


def _score(
    model: Any,
    tok: CleanTokenizer,
    prompts: Sequence[str],
    batch_size: int,
    min_margin: float,
    min_prefix: int | None,
) -> list[Critique]:
    """Judge every prompt in input order; `min_prefix=None` never shares a prefix cache."""
    ids_a = torch.tensor(answer_token_ids(tok, "A"))
    ids_b = torch.tensor(answer_token_ids(tok, "B"))
    rows = [tok.encode_sequence(p) for p in prompts]  # whole prompts: BOS per the model's convention
    if empty := [i for i, row in enumerate(rows) if len(row) <= len(tok.sequence_start())]:
        raise PipelineError(
            f"critic prompts {empty} are empty: the critic scores the token after a prompt"
        )
    found: dict[int, Critique] = {}
    batches = last_logprobs(
        model, rows, tok.pad_token_id, batch_size=batch_size, min_prefix=min_prefix
    )
    for indices, logprobs in batches:
        logp_a = torch.logsumexp(logprobs[:, ids_a], dim=-1).tolist()
        logp_b = torch.logsumexp(logprobs[:, ids_b], dim=-1).tolist()
        for i, a, b in zip(indices, logp_a, logp_b, strict=True):
            found[i] = judge(a, b, min_margin)
    return [found[i] for i in range(len(rows))]


def score_ab(
    model: Any,
    tok: CleanTokenizer,
    prompts: Sequence[str],
    *,
    batch_size: int = 16,
    min_margin: float = DEFAULT_MIN_MARGIN,
) -> list[Critique]:
    """Judge every prompt by logp(A) - logp(B) at its end, batched, a shared rubric run once."""
    return _score(model, tok, prompts, batch_size, min_margin, MIN_SHARED_PREFIX)


def score_ab_plain(
    model: Any,
    tok: CleanTokenizer,
    prompts: Sequence[str],
    *,
    batch_size: int = 16,
    min_margin: float = DEFAULT_MIN_MARGIN,
) -> list[Critique]:
    """The same judgements from full left-padded prompts only: the baseline the cache must match."""
    return _score(model, tok, prompts, batch_size, min_margin, None)
