"""Single-token A/B critic: log-probabilities of "A" and "B" as the next token, no sampling."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from .errors import PipelineError
from .generate import plan_batches

if TYPE_CHECKING:
    from .loader import CleanTokenizer

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
        encoded = tok.encode(variant)
        if len(encoded) == 1 and encoded[0] not in ids:
            ids.append(encoded[0])
    if not ids:
        raise PipelineError(
            f"the tokenizer has no single token for {letter!r} or ' {letter}', so the A/B critic "
            "cannot score it; use a model whose vocabulary holds the letters as tokens"
        )
    return tuple(ids)


def _accepts(model: Any, name: str) -> bool:
    """Whether the model's forward takes the keyword `name` (not every causal LM does)."""
    return name in inspect.signature(model.forward).parameters


def _last_logprobs(model: Any, tok: CleanTokenizer, prompts: list[str]) -> torch.Tensor:
    """Log-softmax over the vocabulary at each prompt's last position, one left-padded pass."""
    batch = tok.encode_batch(prompts)
    input_ids = batch["input_ids"].to(model.device)
    mask = batch["attention_mask"].to(model.device)
    kwargs: dict[str, Any] = {"attention_mask": mask, "use_cache": False}
    if _accepts(model, "position_ids"):
        # Left padding shifts positions; count them from each row's first real token instead,
        # so a padded row scores exactly as it would alone.
        kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
    if _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = 1  # only the last position's logits are needed
    with torch.inference_mode():
        logits = model(input_ids=input_ids, **kwargs).logits[:, -1, :]
    return torch.log_softmax(logits.float(), dim=-1).cpu()


def score_ab(
    model: Any,
    tok: CleanTokenizer,
    prompts: Sequence[str],
    *,
    batch_size: int = 16,
    min_margin: float = DEFAULT_MIN_MARGIN,
) -> list[Critique]:
    """Judge every prompt by logp(A) - logp(B) at its last position, batched, in input order."""
    ids_a = torch.tensor(answer_token_ids(tok, "A"))
    ids_b = torch.tensor(answer_token_ids(tok, "B"))
    prompts = list(prompts)
    lengths = [len(tok.encode(p)) for p in prompts]
    found: dict[int, Critique] = {}
    for indices in plan_batches(lengths, batch_size):
        logprobs = _last_logprobs(model, tok, [prompts[i] for i in indices])
        logp_a = torch.logsumexp(logprobs[:, ids_a], dim=-1).tolist()
        logp_b = torch.logsumexp(logprobs[:, ids_b], dim=-1).tolist()
        for i, a, b in zip(indices, logp_a, logp_b, strict=True):
            margin = a - b
            found[i] = Critique(
                label="A" if margin > 0 else "B",
                logp_a=a,
                logp_b=b,
                margin=margin,
                confident=abs(margin) >= min_margin,
            )
    return [found[i] for i in range(len(prompts))]
