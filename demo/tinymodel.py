"""A real, tiny, random-weight causal LM built offline in ~0.1 s, for tests and demos."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Like a Qwen base model: the chat markers exist as special tokens even without a template,
# which is exactly the situation the contamination checks must catch.
CHAT_SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>"]
BOS, EOS, PAD = "<s>", "</s>", "<pad>"

_SUBJECTS = ["fruits", "planets", "colors", "rivers", "animals", "cities", "tools", "songs"]
_VERBS = ["Name", "List", "Describe", "Explain", "Summarize", "Translate", "Write", "Compare"]
_WORDS = ["apple", "red", "blue", "Paris", "water", "cold", "hot", "yes", "no", "OK", "CAT"]


def _corpus(rng: random.Random, n: int = 300) -> list[str]:
    """Lines in the shapes the pipeline's prompts use: instructions, lists, critic answers."""
    lines = []
    for i in range(n):
        verb, subject = rng.choice(_VERBS), rng.choice(_SUBJECTS)
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 8)))
        lines.append(f"Instruction: {verb} {i % 7 + 2} {subject}.\nResponse: {words}.")
        lines.append(f"{i % 9 + 1}. {verb} the {subject} in one sentence.")
        lines.append(f"Instruction: {words}?\nAnswer: {rng.choice(['A', 'B'])}")
    return lines


def _train_tokenizer(lines: list[str], vocab_size: int):
    """Train a byte-level BPE tokenizer that prepends BOS by default (as Llama's does)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return tok


def _config(arch: str, tokenizer, shape: Mapping[str, Any]):
    """A 2-layer, 64-wide config of the requested architecture, with `shape`'s fields in their place.

    The fields go in at construction: a config derives others from them (Qwen2's per-layer types)."""
    from transformers import LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    common.update(shape)
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "qwen2":
        return Qwen2Config(**common, use_sliding_window=False)
    raise ValueError(f"arch must be 'llama' or 'qwen2', not {arch!r}")


def build_tiny_model(
    out_dir: str | Path,
    *,
    arch: Literal["llama", "qwen2"] = "llama",
    seed: int = 0,
    with_chat_template: bool = False,
    shape: Mapping[str, Any] | None = None,
    device: str = "cpu",
    dtype: Any = None,
) -> Path:
    """Build and save a tiny random model and its tokenizer in `out_dir`; same seed, same files.

    `shape` overrides config fields (the GPU benchmark's 7B shape: the same small tokenizer, a real
    model's widths); `device` and `dtype` say where the random weights are made (a 7B on the GPU, in bf16).
    """
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backend = _train_tokenizer(_corpus(random.Random(seed)), vocab_size=400)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=CHAT_SPECIAL_TOKENS,
    )
    if with_chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    config = _config(arch, tokenizer, shape or {})
    torch.manual_seed(seed)
    chosen = {"dtype": dtype} if dtype is not None else {}  # only when asked: older transformers lack it
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, **chosen)
    if dtype is not None and model.dtype != dtype:  # a transformers that ignored the keyword
        model = model.to(dtype)
    hf_logging.disable_progress_bar()  # the save bar is noise in test and demo output
    try:
        tokenizer.save_pretrained(out)
        model.save_pretrained(out)
    finally:
        hf_logging.enable_progress_bar()
    return out
