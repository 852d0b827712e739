"""Turn pydantic validation errors into messages that name the file, the line and the fix."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import ValidationError

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]+\")\s*=")

Loc = Sequence[str | int]


def _table_paths(text: str) -> dict[tuple, int]:
    """Map every table and key path of a TOML text to the line it is written on."""
    paths: dict[tuple, int] = {}
    counters: dict[tuple, int] = {}
    current: tuple = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            current = _header_path(header.group(1) == "[[", header.group(2).split("."), current, counters)
            paths.setdefault(current, number)
            continue
        key = _KEY.match(line)
        if key:
            paths.setdefault((*current, key.group(1).strip('"')), number)
    return paths


def _header_path(is_array: bool, parts: list[str], current: tuple, counters: dict[tuple, int]) -> tuple:
    """Resolve a `[a.b]` or `[[a.b]]` header to an index path such as ("phases", 2, "gates", 0)."""
    path: tuple = ()
    for depth, part in enumerate(parts):
        path = (*path, part)
        last = depth == len(parts) - 1
        if last and is_array:
            index = counters.get(path, -1) + 1
            counters[path] = index
            # A new parent entry resets the counters of the arrays nested in it.
            for key in [k for k in counters if len(k) > len(path) and k[: len(path)] == path]:
                del counters[key]
            path = (*path, index)
        elif path in counters:
            path = (*path, counters[path])
    return path


def locate_line(text: str, loc: Loc) -> int | None:
    """The line of the longest prefix of `loc` that the TOML text spells out, if any."""
    paths = _table_paths(text)
    for end in range(len(loc), 0, -1):
        line = paths.get(tuple(loc[:end]))
        if line is not None:
            return line
    return None


def _field_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _hint(error: dict) -> str:
    kind, field = error["type"], error["loc"][-1] if error["loc"] else ""
    if kind == "extra_forbidden":
        return f"unknown key {field!r}; remove it or check its spelling (`phasegate schema` lists every key)"
    if kind == "missing":
        return f"required key {field!r} is missing; add it"
    message = error["msg"].removeprefix("Value error, ")
    return f"{message} (got {_shown(error.get('input'))})" if kind != "value_error" and "input" in error else message


def _shown(value: object, limit: int = 80) -> str:
    """A value as the message quotes it, cut short: a bad value may be a whole file long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_problem(text: str, shown: str, loc: Loc, message: str) -> str:
    """`file line N: field.path: message` for one problem at `loc`."""
    line = locate_line(text, loc)
    where = f"{shown} line {line}" if line else shown
    return f"{where}: {_field_path(loc)}: {message}"


def describe_validation_error(exc: ValidationError, text: str, shown: str) -> str:
    """One line per problem: `file line N: field.path: what is wrong and what to write`."""
    return "\n".join(describe_problem(text, shown, list(error["loc"]), _hint(error)) for error in exc.errors())
