"""Parsing gate options with a kind's pydantic model: the shared base model and readable errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class GateOptions(BaseModel):
    """Base of gate option models: unknown keys are errors, parsed options never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
