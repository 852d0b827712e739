"""Gate option models: the shared base, the kind → model registry and building a gate from its declaration."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel

from phasegate.floor.rundir import PLACEHOLDER_NAMES
from phasegate.gates.base import GATE_KINDS, Gate, InvalidGate, invalid_options_result, register
from phasegate.gates.parsing import GateOptions, format_validation_error, parse_options

__all__ = ["GATE_OPTION_MODELS", "GateOptions", "PathTemplate", "build_gate", "declare_gate",
           "format_validation_error", "gate_kind", "invalid_options_result", "parse_options",
           "validate_gate_options"]

GATE_OPTION_MODELS: dict[str, type[BaseModel]] = {}
"""Each gate kind's options model, by kind name (the source of the JSON schema and reference docs)."""

GateT = TypeVar("GateT", bound=type[Gate])
_LITERAL_BRACE = "a literal brace is written twice: {{ for {, }} for }"


def _check_placeholders(path: str) -> str:
    """Reject a path whose `{placeholder}` GateContext.resolve would not know."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(path) if name is not None]
    except ValueError as exc:
        raise ValueError(f"path {path!r} has unbalanced braces: {exc}; {_LITERAL_BRACE}") from None
    unknown = sorted({name for name, _, _ in fields} - set(PLACEHOLDER_NAMES))
    if unknown:
        known = ", ".join("{" + name + "}" for name in sorted(PLACEHOLDER_NAMES))
        raise ValueError(f"path {path!r} uses unknown placeholder(s) {unknown}; known: {known}; {_LITERAL_BRACE}")
    formatted = next((name for name, spec, conv in fields if spec or conv), None)
    if formatted is not None:
        raise ValueError(f"path {path!r}: placeholder {{{formatted}}} takes no format spec or conversion; "
                         f"write {{{formatted}}}")
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


def build_gate(kind: str, options: Mapping[str, Any]) -> Gate:
    """The gate a declaration asks for, its options parsed by the kind's model; ValueError says what is wrong."""
    if kind not in GATE_KINDS:
        known = ", ".join(sorted(GATE_KINDS)) or "(none registered)"
        raise ValueError(f"unknown gate kind {kind!r}; known kinds: {known}")
    return GATE_KINDS[kind].from_options(options)


def declare_gate(kind: str, options: Mapping[str, Any]) -> Gate:
    """Like build_gate, but a declaration that does not parse becomes a gate that always fails (fail closed)."""
    try:
        return build_gate(kind, options)
    except ValueError as exc:
        return InvalidGate(exc)


def validate_gate_options(kind: str, options: Mapping[str, Any]) -> None:
    """Check a gate declaration before a run; raise ValueError saying what is wrong."""
    build_gate(kind, options)
