"""The one tokenization path every built-in phase uses: no chat template, no special token but BOS.

A sequence starts with BOS exactly when the model's own tokenizer puts it there by default (Llama,
Mistral, Gemma: the model was trained with it); nothing else is ever added (no EOS, no template).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from phasegate.pipeline.errors import ModelLoadError

# Any short text: the tokenizer's default encoding of it shows whether the model expects BOS.
_BOS_PROBE = "Instruction: hi"


def declared_bos_convention(tokenizer: Any) -> bool:
    """Whether `tokenizer` declares a BOS token and its default encoding starts a text with it."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    default = tokenizer(_BOS_PROBE)["input_ids"]
    raw = tokenizer(_BOS_PROBE, add_special_tokens=False)["input_ids"]
    return default[:1] == [bos] and raw[:1] != [bos]


class CleanTokenizer:
    """The one tokenization path: BOS per the model's convention, no other special token, no template."""

    def __init__(self, tokenizer: Any) -> None:
        tokenizer.chat_template = None  # apply_chat_template now raises instead of templating
        tokenizer.padding_side = "left"  # generation continues from each row's real last token
        self.pad_set_to_eos = tokenizer.pad_token_id is None
        if self.pad_set_to_eos:
            if tokenizer.eos_token is None:
                raise ModelLoadError(
                    f"tokenizer of {tokenizer.name_or_path!r} has neither a pad nor an eos token; "
                    "add a pad token to its tokenizer_config.json"
                )
            tokenizer.pad_token = tokenizer.eos_token
        self._tok = tokenizer
        self.adds_bos = declared_bos_convention(tokenizer)
        self.bos_token_id: int | None = tokenizer.bos_token_id if self.adds_bos else None
        self.bos_token: str | None = tokenizer.bos_token if self.adds_bos else None
        self.special_ids = frozenset(tokenizer.all_special_ids)
        eos = tokenizer.eos_token_id
        self.eos_token_ids = frozenset([eos] if eos is not None else [])
        plain = {tokenizer.pad_token_id, tokenizer.bos_token_id, *self.eos_token_ids}
        # Special tokens that are not plumbing (chat markers and the like) in generated text.
        self.marker_token_ids = self.special_ids - plain

    @property
    def hf_tokenizer(self) -> Any:
        """The neutralised transformers tokenizer, for APIs that need it (generate's stop strings)."""
        return self._tok

    @property
    def pad_token_id(self) -> int:
        """The id used for left padding."""
        return self._tok.pad_token_id

    def __len__(self) -> int:
        return len(self._tok)

    def encode(self, text: str) -> list[int]:
        """The token ids of `text` exactly, nothing added: for a piece that follows other ids."""
        return self._tok(text, add_special_tokens=False)["input_ids"]

    def sequence_start(self) -> list[int]:
        """The ids every whole sequence starts with: [BOS] where the model expects it, else none."""
        return [self.bos_token_id] if self.bos_token_id is not None else []

    def encode_sequence(self, text: str) -> list[int]:
        """The ids of `text` as a whole sequence (a prompt's start): BOS per convention, then the text."""
        return self.sequence_start() + self.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Left-padded `input_ids` and `attention_mask` of whole sequences: pads, then BOS (if any), then text."""
        # BOS is prepended by hand (not add_special_tokens=True), so a tokenizer whose default
        # also appends EOS cannot sneak it in; padding the id lists puts the pads before BOS.
        rows = [self.encode_sequence(text) for text in texts]
        batch = self._tok.pad({"input_ids": rows}, padding=True, return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids` with special tokens left out."""
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def token_text(self, token_id: int) -> str:
        """The vocabulary entry of one id (for evidence)."""
        return str(self._tok.convert_ids_to_tokens(int(token_id)))
