"""Path globs with gitignore-like meaning: `*` stays inside one folder, `**` crosses folders."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import PurePosixPath


def _translate_class(pattern: str, start: int) -> tuple[str, int]:
    """Translate a `[...]` class starting at `start`; an unclosed bracket is a literal `[`."""
    end = pattern.find(
        "]", start + 2 if pattern[start + 1 : start + 2] in ("!", "]") else start + 1
    )
    if end == -1:
        return re.escape("["), start + 1
    body = pattern[start + 1 : end]
    if body.startswith("!"):
        body = "^" + body[1:]
    # A class never matches the separator, as in shells and gitignore.
    return "(?!/)[" + body.replace("\\", "\\\\") + "]", end + 1


@functools.lru_cache(maxsize=512)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile one glob (relative, `/`-separated) into an anchored regular expression."""
    pattern = pattern.removeprefix("./")
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            piece, i = _translate_class(pattern, i)
            out.append(piece)
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile(r"\A" + "".join(out) + r"\Z", re.DOTALL)


def matches(path: str, pattern: str) -> bool:
    """True when `path` or one of its parent folders matches `pattern` (so `archived` covers its files)."""
    regex = compile_glob(pattern)
    candidate = PurePosixPath(path)
    return any(regex.match(str(p)) for p in (candidate, *candidate.parents) if str(p) != ".")


def matches_any(path: str, patterns: Iterable[str]) -> bool:
    """True when `path` matches at least one of `patterns`."""
    return any(matches(path, pattern) for pattern in patterns)


def check_glob(pattern: str) -> str:
    """Validate a glob for an options model; raise ValueError when it cannot be compiled."""
    if not pattern or pattern.startswith("/"):
        raise ValueError(f"glob {pattern!r} must be a non-empty path relative to the policy root")
    try:
        compile_glob(pattern)
    except re.error as exc:
        raise ValueError(f"glob {pattern!r} is not valid: {exc}") from None
    return pattern
