"""The one tokenization path every built-in phase uses: no special tokens added, no chat template."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from phasegate.pipeline.errors import ModelLoadError


class CleanTokenizer:
    """The one tokenization path: never adds special tokens, never applies a chat template."""

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
        """The token ids of `text` exactly, nothing added."""
        return self._tok(text, add_special_tokens=False)["input_ids"]

    def encode_batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Left-padded `input_ids` and `attention_mask` tensors for `texts`, nothing added."""
        batch = self._tok(list(texts), add_special_tokens=False, padding=True, return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids` with special tokens left out."""
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def token_text(self, token_id: int) -> str:
        """The vocabulary entry of one id (for evidence)."""
        return str(self._tok.convert_ids_to_tokens(int(token_id)))
