"""Batched generation: left padding, stop strings, length bucketing, seeded sampling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from phasegate.pipeline.generation.prompts import clean_response, delimiter_leakage

if TYPE_CHECKING:
    from phasegate.pipeline.tokenizer import CleanTokenizer

_SENTENCE_END = (".", "!", "?", '"', "'", ")", "]")


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate: greedy when temperature is 0, else seeded nucleus sampling."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    batch_size: int = 16
    bucket: bool = True
    min_new_tokens: int = 0
    cache: str = "dynamic"  # the hf engine's KV cache: "dynamic" grows, "static" is allocated once

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (recorded with every generated row).

        The cache is left out: the engine sets it, and provenance.json's engine record names it."""
        data = asdict(self)
        data["stop"] = list(self.stop)
        del data["cache"]
        return data


@dataclass(frozen=True)
class GenerationResult:
    """One prompt's continuation and how it ended."""

    prompt: str
    text: str
    raw_text: str
    token_ids: tuple[int, ...]
    n_new_tokens: int
    hit_token_limit: bool
    stopped_by_stop_string: bool
    stopped_by_eos: bool
    repetitive: bool
    runaway: bool
    leakage: tuple[str, ...]

    def to_dict(self, *, with_ids: bool = False) -> dict[str, Any]:
        """The result as JSON-ready values, token ids only on request (they are bulky)."""
        data = asdict(self)
        data["leakage"] = list(self.leakage)
        data["token_ids"] = list(self.token_ids) if with_ids else None
        if not with_ids:
            del data["token_ids"]
        return data


def plan_batches(
    lengths: Sequence[int], batch_size: int, *, bucket: bool = True
) -> list[list[int]]:
    """Index batches; bucketing sorts by length first so rows in a batch need little padding."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = list(range(len(lengths)))
    if bucket:
        order.sort(key=lambda i: -lengths[i])  # stable: equal lengths keep their order
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padding_waste(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The fraction of prompt positions in `batches` that are padding."""
    total = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return 0.0 if total == 0 else 1.0 - sum(lengths) / total


def repetition_loop(ids: Sequence[int], *, max_period: int = 16, min_span: int = 12) -> bool:
    """True when the sequence ends in a loop: a block of at most `max_period` ids repeated."""
    n = len(ids)
    for period in range(1, max_period + 1):
        span = max(min_span, 3 * period)  # at least three turns of the loop
        if n >= span and all(
            ids[n - k] == ids[n - k - period] for k in range(1, span - period + 1)
        ):
            return True
    return False


def _stop_index(ids: list[int], tok: CleanTokenizer, stops: Sequence[str]) -> int | None:
    """The shortest prefix length whose text contains a stop string (binary search)."""
    if not stops or not any(s in tok.decode(ids) for s in stops):
        return None
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if any(s in tok.decode(ids[:mid]) for s in stops):
            hi = mid
        else:
            lo = mid + 1
    return lo


def finish_row(
    prompt: str, row: list[int], tok: CleanTokenizer, settings: GenerationSettings
) -> GenerationResult:
    """Trim one row's new ids to where generation really ended and classify the ending (any engine's row:
    the new ids, ending in an EOS id when EOS ended it, and whatever fill follows)."""
    eos_at = next((i + 1 for i, t in enumerate(row) if t in tok.eos_token_ids), None)
    stop_at = _stop_index(row[: eos_at or len(row)], tok, settings.stop)
    # A finished row is filled with pad ids (often equal to eos), so the earliest end wins.
    ends = [e for e in (eos_at, stop_at) if e is not None]
    end = min(ends) if ends else len(row)
    ids = row[:end]
    by_eos = eos_at is not None and end == eos_at
    body = ids[:-1] if by_eos else ids
    raw_text = tok.decode(body)
    text = clean_response(raw_text, settings.stop)
    hit_limit = not ends
    repetitive = repetition_loop(body)
    # Marker tokens the model emitted (dropped from the text), and special tokens spelled out in
    # the text that would turn into special ids when the text is put into a later prompt.
    emitted = [t for t in body if t in tok.marker_token_ids]
    spelled = [t for t in tok.encode(text) if t in tok.special_ids]  # a piece: no BOS of its own
    specials = [tok.token_text(t) for t in emitted + spelled]
    return GenerationResult(
        prompt=prompt,
        text=text,
        raw_text=raw_text,
        token_ids=tuple(ids),
        n_new_tokens=len(ids),
        hit_token_limit=hit_limit,
        stopped_by_stop_string=stop_at is not None and end == stop_at and not by_eos,
        stopped_by_eos=by_eos,
        repetitive=repetitive,
        # Runaway: the model looped, or it was cut off by the limit in the middle of a sentence.
        runaway=repetitive or (hit_limit and not text.endswith(_SENTENCE_END)),
        leakage=tuple(dict.fromkeys(delimiter_leakage(text) + specials)),
    )


def _generate_kwargs(tok: CleanTokenizer, settings: GenerationSettings) -> dict[str, Any]:
    """Explicit generate() arguments, so a checkpoint's own generation defaults never leak in."""
    kwargs: dict[str, Any] = dict(
        max_new_tokens=settings.max_new_tokens,
        min_new_tokens=settings.min_new_tokens or None,
        pad_token_id=tok.pad_token_id,
        eos_token_id=sorted(tok.eos_token_ids) or None,
        do_sample=settings.temperature > 0,
    )
    if settings.temperature > 0:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    if settings.cache == "static":
        # Allocated once for the longest row; with torch.compile on a GPU it avoids re-tracing.
        kwargs["cache_implementation"] = "static"
    if settings.stop:
        kwargs.update(stop_strings=list(settings.stop), tokenizer=tok.hf_tokenizer)
    return kwargs


def _generate_batch(
    model: Any, tok: CleanTokenizer, prompts: list[str], settings: GenerationSettings, seed: int
) -> list[list[int]]:
    """One generate() call over a left-padded batch; returns each row's new ids (with fill)."""
    batch = tok.encode_batch(prompts)
    input_ids = batch["input_ids"].to(model.device)
    mask = batch["attention_mask"].to(model.device)
    if settings.temperature > 0:
        torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids, attention_mask=mask, **_generate_kwargs(tok, settings)
        )
    return out[:, input_ids.shape[1] :].tolist()


def generate_texts(
    model: Any, tok: CleanTokenizer, prompts: Sequence[str], settings: GenerationSettings
) -> list[GenerationResult]:
    """Continue every prompt, batched (and length-bucketed), results in the prompts' order."""
    prompts = list(prompts)
    lengths = [len(tok.encode_sequence(p)) for p in prompts]  # as encode_batch will run them
    results: list[GenerationResult | None] = [None] * len(prompts)
    for number, indices in enumerate(
        plan_batches(lengths, settings.batch_size, bucket=settings.bucket)
    ):
        texts = [prompts[i] for i in indices]
        rows = _generate_batch(model, tok, texts, settings, seed=settings.seed + number)
        for i, prompt, row in zip(indices, texts, rows, strict=True):
            results[i] = finish_row(prompt, row, tok, settings)
    return [r for r in results if r is not None]
