"""What text may enter the journal or leave a renderer: secrets masked, strings cut short, numbers finite."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

# A phase's free text (a log line, a summary, a refused line) is kept this long, secrets masked first.
MAX_TEXT_CHARS = 2000
# Deeper values are left out: a renderer never recurses without end.
MAX_DEPTH = 12
TOO_DEEP = "[nested too deep]"

Mask = Callable[[str], str]


def cut(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` if it fits in `limit` characters, else its start and how much was left out (within `limit`)."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 40)  # room for the note, so that cutting again changes nothing
    return f"{text[:keep]}… [{len(text) - keep} more characters]"


def masked_text(text: str, mask: Mask, limit: int = MAX_TEXT_CHARS) -> str:
    """Masked, then cut: a cut never leaves part of a secret that masking would no longer recognise."""
    return cut(mask(text), limit)


def clean(value: Any, mask: Mask, limit: int = MAX_TEXT_CHARS, depth: int = 0) -> Any:
    """A JSON-safe copy of `value`: strings (keys too) masked and cut, NaN and infinities as text."""
    if isinstance(value, str):
        return masked_text(value, mask, limit)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, Mapping):
        return {masked_text(str(k), mask, limit): clean(v, mask, limit, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [clean(item, mask, limit, depth + 1) for item in value]
    return masked_text(str(value), mask, limit)
