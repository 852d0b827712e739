"""JSON objects in a reviewer's free text, found in bounded time whatever it printed."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

# The decoder may read this many characters in all, per character of text (and at least _MIN_WORK): every
# start it tries may read far before it fails, so without a bound garbage takes time quadratic in its size.
_WORK_PER_CHAR = 4
_MIN_WORK = 1 << 20


class AnswerRefused(ValueError):
    """Text no answer may hold: a number that is not finite, a key given twice, or too tangled to read."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = next(key for key in keys if keys.count(key) > 1)
        raise AnswerRefused(f"gives the key {twice[:80]!r} twice in one object, so its meaning is ambiguous")
    return dict(pairs)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise AnswerRefused(f"holds the number {text[:40]}, which is too large to be finite")
    return value


def _constant(name: str) -> float:
    raise AnswerRefused(f"holds {name}, which is not a JSON number")


STRICT = json.JSONDecoder(object_pairs_hook=_pairs, parse_float=_finite, parse_constant=_constant)
"""For answers: refuses what JSON does not define (NaN, 1e999) and what it leaves ambiguous (a repeated key)."""
LENIENT = json.JSONDecoder()
"""For a CLI's own envelope (cost, tokens): whatever Python's json takes; the fields are checked one by one."""


def json_objects(text: str, starts: Iterable[int], decoder: json.JSONDecoder = LENIENT) -> Iterator[dict[str, Any]]:
    """Each JSON object that decodes at one of `starts` (ascending), except those inside one already found.

    Raises AnswerRefused when the decoder has read several times the text without an end in sight.
    """
    budget = max(_MIN_WORK, _WORK_PER_CHAR * len(text))
    end = 0
    for start in starts:
        if start < end:
            continue
        try:
            value, stop = decoder.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            budget -= max(1, exc.pos - start)
        else:
            budget -= stop - start
            if isinstance(value, dict):
                end = stop
                yield value
        if budget < 0:
            raise AnswerRefused("is too tangled to read: its braces open far more JSON than ever closes")


def brace_starts(text: str) -> Iterator[int]:
    """Every `{` of `text`, in order."""
    index = text.find("{")
    while index != -1:
        yield index
        index = text.find("{", index + 1)


def line_starts(text: str) -> Iterator[int]:
    """Every `{` that starts a line of `text` (after spaces or tabs), in order."""
    index = 0
    while index != -1:
        at = index
        while at < len(text) and text[at] in " \t":
            at += 1
        if text.startswith("{", at):
            yield at
        index = text.find("\n", at)
        index = index + 1 if index != -1 else -1


def json_line(line: str) -> dict[str, Any]:
    """One JSONL event of a CLI's stream, or {} for a line that is not a JSON object."""
    try:
        value = json.loads(line)
    except ValueError:  # JSONDecodeError, and numbers too long to convert
        return {}
    return value if isinstance(value, dict) else {}
