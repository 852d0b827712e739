"""Next-token log-probabilities at each prompt's end, computing a prefix shared by many prompts once."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from phasegate.pipeline.generation.generate import plan_batches

# A shorter shared prefix (a label such as "Instruction: ") saves too little to pay for the
# extra batch-1 prefix forward; a rubric is hundreds of tokens.
MIN_SHARED_PREFIX = 16


@dataclass(frozen=True)
class PlannedBatch:
    """Rows run in one forward, and how many leading tokens they share through one cache (0: none)."""

    indices: tuple[int, ...]
    prefix_len: int


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading token ids `a` and `b` have in common."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _shared_prefix(rows: Sequence[Sequence[int]], indices: Sequence[int]) -> int:
    """Leading tokens all the rows share, leaving every row at least one token after them."""
    first = rows[indices[0]]
    shared = min(common_prefix_len(first, rows[i]) for i in indices)
    return min(shared, min(len(rows[i]) for i in indices) - 1)


def _prefix_order(rows: Sequence[Sequence[int]], min_prefix: int) -> list[int]:
    """Row indices with rows that share >= `min_prefix` leading tokens side by side, longest first."""
    # In lexicographic order rows with a common prefix are neighbours; a run of neighbours
    # sharing enough is one kind of prompt, and sorting it by length keeps padding low.
    order = sorted(range(len(rows)), key=lambda i: list(rows[i]))
    runs: list[list[int]] = []
    for k, i in enumerate(order):
        if k and common_prefix_len(rows[order[k - 1]], rows[i]) >= min_prefix:
            runs[-1].append(i)
        else:
            runs.append([i])
    return [i for run in runs for i in sorted(run, key=lambda i: -len(rows[i]))]


def _positions(rows: Sequence[Sequence[int]], plan: Sequence[PlannedBatch]) -> int:
    """Token positions a plan runs: padded rows after each prefix, plus one pass per prefix."""
    total = 0
    for batch in plan:
        width = max(len(rows[i]) for i in batch.indices) - batch.prefix_len
        total += len(batch.indices) * width + batch.prefix_len
    return total


def plan_prefix_batches(
    rows: Sequence[Sequence[int]], batch_size: int, min_prefix: int | None
) -> list[PlannedBatch]:
    """Batches of at most `batch_size` rows, sharing a prefix where that beats length bucketing."""
    lengths = [len(r) for r in rows]
    plain = [PlannedBatch(tuple(b), 0) for b in plan_batches(lengths, batch_size)]
    if not min_prefix:  # None or 0: never share
        return plain
    order = _prefix_order(rows, min_prefix)
    shared = []
    for chunk in (order[k : k + batch_size] for k in range(0, len(order), batch_size)):
        prefix = _shared_prefix(rows, chunk)
        useful = len(chunk) > 1 and prefix >= min_prefix
        shared.append(PlannedBatch(tuple(chunk), prefix if useful else 0))
    # Both plans run the same number of forwards (ceil(rows / batch_size)) plus one prefix
    # pass per shared batch; on ties the plain plan wins, having no prefix passes.
    return min(plain, shared, key=lambda plan: _positions(rows, plan))


def _accepts(model: Any, name: str) -> bool:
    """Whether the model's forward takes the keyword `name` (not every causal LM does)."""
    return name in inspect.signature(model.forward).parameters


def _pad(rows: Sequence[Sequence[int]], pad_id: int, *, left: bool) -> tuple[torch.Tensor, ...]:
    """Token-id rows padded to one width: `input_ids` and `attention_mask`."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(list(row), dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def _forward(model: Any, input_ids: torch.Tensor, **kwargs: Any) -> Any:
    """One inference-mode forward with every tensor argument on the model's device."""
    moved = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    with torch.inference_mode():
        return model(input_ids=input_ids.to(model.device), **moved)


def full_last_logits(model: Any, rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Logits at each row's last token from one left-padded forward over the whole prompts."""
    input_ids, mask = _pad(rows, pad_id, left=True)
    kwargs: dict[str, Any] = {"attention_mask": mask, "use_cache": False}
    if _accepts(model, "position_ids"):
        # Left padding shifts positions; count them from each row's first real token instead,
        # so a padded row scores exactly as it would alone.
        kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    if _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = 1  # only the last position's logits are needed
    return _forward(model, input_ids, **kwargs).logits[:, -1, :]


def prefix_cache(model: Any, prefix: Sequence[int]) -> Any | None:
    """The key/value cache of `prefix` (batch 1), or None where reusing it is not supported here."""
    from transformers.cache_utils import Cache

    if not _accepts(model, "past_key_values"):
        return None
    # Only the keys and values are wanted; one logit column is the least the forward computes.
    keep = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    cache = _forward(model, torch.tensor([list(prefix)]), use_cache=True, **keep).past_key_values
    # Linear-attention (recurrent) layers keep a summarised past that the equivalence tests
    # cannot cover here; such models take the full forward. Sliding-window layers are tested.
    recurrent = any(getattr(cache, "is_linear", ()))
    return cache if isinstance(cache, Cache) and not recurrent else None


def cached_last_logits(
    model: Any, cache: Any, suffixes: Sequence[Sequence[int]], pad_id: int
) -> torch.Tensor:
    """Logits at each row's last suffix token, attending to the cached prefix (which is used up)."""
    input_ids, mask = _pad(suffixes, pad_id, left=False)
    batch, width = input_ids.shape
    prefix_len = cache.get_seq_length()
    # In place: the forward appends the suffixes to this cache, so it serves one batch only.
    cache.batch_repeat_interleave(batch)
    kwargs: dict[str, Any] = {
        "past_key_values": cache,
        "use_cache": True,
        "attention_mask": torch.cat([torch.ones(batch, prefix_len, dtype=mask.dtype), mask], 1),
    }
    if _accepts(model, "position_ids"):
        # Right padding keeps every real suffix token right after the prefix, at the positions
        # it has in the full prompt; pads come after the real tokens, so causality hides them.
        kwargs["position_ids"] = (prefix_len + torch.arange(width)).expand(batch, -1)
    last = mask.sum(-1) - 1
    columns = last
    if _accepts(model, "logits_to_keep"):
        # A 1-D index list works on every transformers version that has logits_to_keep; rows
        # of a length-sorted batch end at few distinct positions, so few columns are kept.
        keep = torch.unique(last)
        kwargs["logits_to_keep"] = keep.to(model.device)
        columns = torch.searchsorted(keep, last)
    logits = _forward(model, input_ids, **kwargs).logits
    return logits[torch.arange(batch, device=logits.device), columns.to(logits.device)]


def last_logprobs(
    model: Any,
    rows: Sequence[Sequence[int]],
    pad_id: int,
    *,
    batch_size: int,
    min_prefix: int | None = MIN_SHARED_PREFIX,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield (row indices, log-softmax at each row's last token), batch by batch."""
    # A batch sharing a prefix runs it once at batch 1, then its suffixes; any other batch
    # (every batch, with min_prefix=None) runs its full prompts.
    for batch in plan_prefix_batches(rows, batch_size, min_prefix):
        indices, p = list(batch.indices), batch.prefix_len
        cache = prefix_cache(model, rows[indices[0]][:p]) if p else None
        if cache is None:
            logits = full_last_logits(model, [rows[i] for i in indices], pad_id)
        else:
            logits = cached_last_logits(model, cache, [rows[i][p:] for i in indices], pad_id)
        yield indices, torch.log_softmax(logits.float(), dim=-1).cpu()
