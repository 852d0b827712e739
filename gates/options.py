"""Gate option models: the shared base, the kind → model registry and readable validation errors."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from phasegate.gates.base import GATE_KINDS, Gate, GateResult, GateStatus, register

# Placeholders `GateContext.resolve` fills in; anything else would raise at evaluation time.
PATH_PLACEHOLDERS = frozenset({"artifacts", "run_dir", "session_dir", "phase"})

GATE_OPTION_MODELS: dict[str, type[BaseModel]] = {}
"""Each gate kind's options model, by kind name (the source of the JSON schema and reference docs)."""

ModelT = TypeVar("ModelT", bound=BaseModel)
GateT = TypeVar("GateT", bound=type[Gate])


class GateOptions(BaseModel):
    """Base of gate option models: unknown keys are errors, parsed options never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_placeholders(path: str) -> str:
    """Reject a path whose `{placeholder}` GateContext.resolve would not know."""
    try:
        names = {field for _, field, _, _ in string.Formatter().parse(path) if field is not None}
    except ValueError as exc:
        raise ValueError(f"path {path!r} has unbalanced braces: {exc}") from None
    unknown = sorted(names - PATH_PLACEHOLDERS)
    if unknown:
        known = ", ".join("{" + name + "}" for name in sorted(PATH_PLACEHOLDERS))
        raise ValueError(f"path {path!r} uses unknown placeholder(s) {unknown}; known: {known}")
    return path


PathTemplate = Annotated[str, AfterValidator(_check_placeholders)]
"""A path from the session file: may use {artifacts}, {run_dir}, {session_dir}, {phase}."""


def gate_kind(cls: GateT) -> GateT:
    """Class decorator: register a gate kind and its `options_model` under the kind's name."""
    register(cls)
    model = getattr(cls, "options_model", None)
    if model is not None:
        GATE_OPTION_MODELS[cls.kind] = model
    return cls


def _format_location(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as `rules[0].attribute`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(options)"


def format_validation_error(kind: str, error: ValidationError) -> str:
    """One readable message for every problem pydantic found in a gate's options."""
    lines = []
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{_format_location(item['loc'])}: {message}")
    return f"gate kind {kind!r}: invalid options: " + "; ".join(lines)


def parse_options(kind: str, model: type[ModelT], options: Mapping[str, Any]) -> ModelT:
    """Validate `options` against `model`, raising ValueError with a message naming each bad field."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        raise ValueError(format_validation_error(kind, exc)) from None


def validate_gate_options(kind: str, options: Mapping[str, Any]) -> None:
    """Check a gate declaration before a run; raise ValueError saying what is wrong."""
    if kind not in GATE_KINDS:
        known = ", ".join(sorted(GATE_KINDS)) or "(none registered)"
        raise ValueError(f"unknown gate kind {kind!r}; known kinds: {known}")
    model = GATE_OPTION_MODELS.get(kind)
    if model is not None:
        parse_options(kind, model, options)


def invalid_options_result(error: ValueError) -> GateResult:
    """The result of a gate whose options do not validate: a failure, so a broken gate never passes."""
    return GateResult(
        status=GateStatus.FAIL,
        summary=str(error),
        evidence={"error": str(error)},
    )
