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


def storable(text: str) -> str:
    """`text` as UTF-8 can hold it: a lone surrogate (an undecodable file name, say) reads as `\\udcff`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


# C0 and C1 control characters (tab aside) and DEL, written as escapes: a phase's text must not move a
# terminal's cursor, recolour it or forge a line of its own.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if code != 0x09}
_CONTROLS.update({0x0A: "\\n", 0x0D: "\\r"})


def printable(text: str) -> str:
    """One line a terminal shows as it reads: control characters escaped, secrets already masked by the caller."""
    return storable(text).translate(_CONTROLS)


def masked_text(text: str, mask: Mask, limit: int = MAX_TEXT_CHARS) -> str:
    """Masked, then cut: a cut never leaves part of a secret that masking would no longer recognise."""
    return cut(storable(mask(text)), limit)


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
