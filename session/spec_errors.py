"""Turn pydantic validation errors into messages that name the file, the line and the fix."""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Sequence
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

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


def _shown(value: object, limit: int = 80) -> str:
    """A value as the message quotes it, cut short: a bad value may be a whole file long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_problem(text: str, shown: str, loc: Loc, message: str, *, about: str = "") -> str:
    """`file line N: field.path (about): message` for one problem at `loc`; `about` names its phase or gate."""
    line = locate_line(text, loc)
    where = f"{shown} line {line}" if line else shown
    return f"{where}: {_field_path(loc)}{f' ({about})' if about else ''}: {message}"


def describe_validation_error(exc: ValidationError, text: str, shown: str, *, model: type[BaseModel] | None = None,
                              prefix: Loc = (), extra_keys: Sequence[str] = (), about: str = "",
                              data: Any = None) -> str:
    """One line per problem: `file line N: field.path: what is wrong and what to write`.

    `model` is the model that raised (its keys are suggested for a misspelled one), `prefix` where its table
    sits in the file, `extra_keys` keys that table also takes, `about` what the table is (its phase and gate)
    and `data` the file's values (a problem inside a phase then names the phase's id)."""
    errors = exc.errors(include_url=False)
    hints = [_hint(error, _keys_at(model, error["loc"][:-1], extra_keys)) for error in errors]
    # A misspelled required key shows up twice, as unknown and as missing: the "did you mean" says both.
    explained = {(*error["loc"][:-1], hint.suggestion) for error, hint in zip(errors, hints, strict=True)
                 if hint.suggestion}
    return "\n".join(describe_problem(text, shown, [*prefix, *error["loc"]], hint.text,
                                       about=", ".join(filter(None, (_phase_named(data, error["loc"]), about))))
                     for error, hint in zip(errors, hints, strict=True)
                     if not (error["type"] == "missing" and tuple(error["loc"]) in explained))


def _phase_named(data: Any, loc: Loc) -> str:
    """`phase 'train'` when `loc` is inside a phase that has an id, else nothing."""
    if not (isinstance(data, dict) and len(loc) > 2 and loc[0] == "phases" and isinstance(loc[1], int)):
        return ""
    phases = data.get("phases")
    phase = phases[loc[1]] if isinstance(phases, list) and loc[1] < len(phases) else None
    phase_id = phase.get("id") if isinstance(phase, dict) else None
    return f"phase {phase_id!r}" if isinstance(phase_id, str) and loc[2] != "id" else ""


class _Hint(NamedTuple):
    """What to say about one pydantic error, and the key it suggests instead of a misspelled one."""

    text: str
    suggestion: str | None = None


def closest(word: str, choices: Sequence[str]) -> str | None:
    """The choice `word` is most likely a misspelling of, if one is close enough."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _hint(error: dict, keys: list[str] | None) -> _Hint:
    kind, field = error["type"], error["loc"][-1] if error["loc"] else ""
    if kind == "extra_forbidden":
        suggestion = closest(str(field), keys or [])
        if suggestion:
            return _Hint(f"unknown key {field!r}; did you mean {suggestion!r}?", suggestion)
        listed = f"use one of: {', '.join(keys)}" if keys else "`phasegate schema` lists every key"
        return _Hint(f"unknown key {field!r}; remove it or check its spelling ({listed})")
    if kind == "missing":
        given = error.get("input")
        strays = [k for k in given if k not in (keys or [])] if isinstance(given, dict) else []
        stray = closest(str(field), strays)
        return _Hint(f"required key {field!r} is missing" + (f"; is {stray!r} a misspelling of it?" if stray else
                                                             "; add it"))
    message = _plain_message(kind, error.get("ctx") or {}) or error["msg"].removeprefix("Value error, ")
    return _Hint(f"{message} (got {_shown(error.get('input'))})" if kind != "value_error" and "input" in error
                 else message)


_PLAIN = {
    "greater_than": "must be greater than {gt}", "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}", "less_than_equal": "must be at most {le}",
    "literal_error": "must be one of {expected}", "string_too_long": "must be at most {max_length} characters",
    "string_too_short": "must be at least {min_length} characters",
    "string_pattern_mismatch": "must match the pattern {pattern}",
    "too_short": "needs at least {min_length} item(s)", "too_long": "takes at most {max_length} item(s)",
    "union_tag_invalid": "{discriminator} must be one of {expected_tags}",
    "union_tag_not_found": "needs the key {discriminator}",
    "string_type": "must be a string, in quotes", "int_type": "must be a whole number",
    "int_parsing": "must be a whole number", "int_from_float": "must be a whole number",
    "float_type": "must be a number", "float_parsing": "must be a number", "finite_number": "must be a finite number",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "list_type": "must be a list, e.g. [\"a\", \"b\"]", "dict_type": "must be a table",
    "model_type": "must be a table", "model_attributes_type": "must be a table",
}


def _plain_message(kind: str, ctx: dict) -> str | None:
    """pydantic's "Input should be …" said as the session file's reader needs it."""
    template = _PLAIN.get(kind)
    try:
        return template.format(**ctx) if template else None
    except (KeyError, IndexError):  # a pydantic version with other context keys: its own words then
        return None


def _keys_at(model: type[BaseModel] | None, loc: Loc, extra: Sequence[str]) -> list[str] | None:
    """The keys the table at `loc` of `model` takes (with `extra` at the top), when `loc` leads to one model."""
    node: Any = model
    for part in loc:
        node = _step(node, part)
    found = _models(node)
    if len(found) != 1:
        return None
    return [field.alias or name for name, field in found[0].model_fields.items()] + ([] if loc else list(extra))


def _step(node: Any, part: str | int) -> Any:
    """The type one step down `node` at `part`: a list's item, a dict's value, a model's field, a union's member."""
    if node is None:
        return None
    node = _unwrap(node)
    origin, args = get_origin(node), get_args(node)
    if isinstance(part, int):
        return args[0] if origin in (list, tuple, set, frozenset) and args else None
    if origin is dict:
        return args[1] if len(args) == 2 else None
    models = _models(node)
    if len(models) == 1:
        field = next((f for name, f in models[0].model_fields.items() if part in (name, f.alias)), None)
        return field.annotation if field else None
    # pydantic names the member of a union it tried by its tag (discriminated) or its class name.
    return next((m for m in models if part == m.__name__ or part in _tags(m)), None)


def _unwrap(node: Any) -> Any:
    while get_origin(node) is Annotated:
        node = get_args(node)[0]
    return node


def _models(node: Any) -> list[type[BaseModel]]:
    node = _unwrap(node)
    if get_origin(node) in (Union, types.UnionType):
        return [m for member in get_args(node) for m in _models(member)]
    return [node] if isinstance(node, type) and issubclass(node, BaseModel) else []


def _tags(model: type[BaseModel]) -> set[str]:
    """The values a model's Literal fields allow: a discriminated union's tags."""
    return {value for field in model.model_fields.values() if get_origin(field.annotation) is Literal
            for value in get_args(field.annotation)}
