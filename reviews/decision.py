"""The strict decision contract: one JSON object, validated, bound to its gate and nonce."""

from __future__ import annotations

import enum
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from phasegate.floor.states import Route
from phasegate.reviews.json_scan import STRICT, AnswerRefused, brace_starts, json_objects


class Decision(enum.StrEnum):
    """What a reviewer advises; it can only route a phase, never pass a failed hard gate."""

    SCALE = "SCALE"
    ITERATE = "ITERATE"
    INVESTIGATE = "INVESTIGATE"
    STOP = "STOP"


# What the controller does with a decision.
ROUTES: Mapping[Decision, Route] = MappingProxyType(
    {
        Decision.SCALE: Route.ADVANCE,
        Decision.ITERATE: Route.RETRY,
        Decision.INVESTIGATE: Route.PAUSE,
        Decision.STOP: Route.STOP,
    }
)


class DecisionObject(BaseModel):
    """The JSON object a reviewer must answer with; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Decision = Field(description="SCALE, ITERATE, INVESTIGATE or STOP.")
    reasons: list[str] = Field(description="Why, one short sentence each.")
    changes: dict[str, Any] = Field(
        default_factory=dict, description="Parameter changes for ITERATE (name -> new value)."
    )
    gate_id: str = Field(description="The gate id copied from the prompt.")
    nonce: str = Field(description="The per-request nonce copied from the prompt.")


@dataclass(frozen=True)
class Verdict:
    """A decision with its reasons; `error` is set when the reviewer failed (fail closed)."""

    decision: Decision
    reasons: tuple[str, ...]
    changes: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def is_reviewer_error(self) -> bool:
        """True when the reviewer did not produce a valid answer."""
        return self.error is not None


@dataclass(frozen=True)
class ChangeFilter:
    """ITERATE changes split into the whitelisted ones and the rejected rest."""

    accepted: Mapping[str, Any]
    rejected: Mapping[str, Any]


def reviewer_error(reason: str) -> Verdict:
    """A failed review: INVESTIGATE (pause for the operator) with the reason, never a pass."""
    return Verdict(Decision.INVESTIGATE, (reason,), {}, error=reason)


def find_json_objects(text: str) -> list[dict[str, Any]]:
    """Every top-level JSON object in `text`, bare or inside markdown fences, in order.

    Raises AnswerRefused for a number JSON does not define, a repeated key, or text too tangled to read.
    """
    return list(json_objects(text, brace_starts(text), STRICT))


def _candidates(text: str) -> list[dict[str, Any]]:
    """The decision-shaped objects of `text`, exact duplicates collapsed."""
    unique: dict[str, dict[str, Any]] = {}
    for obj in find_json_objects(text):
        if "decision" in obj:
            unique.setdefault(json.dumps(obj, sort_keys=True), obj)
    return list(unique.values())


def _pick(candidates: list[dict[str, Any]]) -> dict[str, Any] | str:
    """The one object to trust, or the reason none can be trusted."""
    if not candidates:
        return "the reviewer's answer holds no JSON object with a 'decision'"
    decisions = {json.dumps(c.get("decision")) for c in candidates}
    if len(decisions) > 1:
        shown = ", ".join(sorted(decisions))
        return f"the reviewer's answer holds conflicting decision objects ({shown})"
    changes = {json.dumps(c.get("changes"), sort_keys=True) for c in candidates}
    if len(changes) > 1:
        return "the reviewer's answer holds several decision objects with different changes"
    return candidates[-1]


def parse_decision(text: str, *, gate_id: str, nonce: str) -> Verdict:
    """Extract and validate the one decision object for this gate and nonce from `text`; never raises."""
    try:
        return _parse_decision(text, gate_id=gate_id, nonce=nonce)
    except Exception as exc:  # noqa: BLE001 - an answer that breaks the parser is a reviewer error (pause), never a stop
        return reviewer_error(f"the reviewer's answer could not be parsed ({type(exc).__name__}: {str(exc)[:200]})")


def _parse_decision(text: str, *, gate_id: str, nonce: str) -> Verdict:
    """The verdict of `text`; may raise on input the JSON decoder cannot take (nesting too deep)."""
    try:
        picked = _pick(_candidates(text))
    except AnswerRefused as exc:
        return reviewer_error(f"the reviewer's answer {exc}")
    if isinstance(picked, str):
        return reviewer_error(picked)
    try:
        obj = DecisionObject.model_validate(picked)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'object'}: {err['msg']}"
            for err in exc.errors()
        )
        return reviewer_error(f"the decision object is invalid: {problems}")
    if obj.gate_id != gate_id:
        return reviewer_error(f"the decision names gate '{obj.gate_id}', expected '{gate_id}'")
    if obj.nonce != nonce:
        return reviewer_error("the decision's nonce does not match this request")
    return Verdict(obj.decision, tuple(obj.reasons), MappingProxyType(dict(obj.changes)))


def filter_changes(changes: Mapping[str, Any], whitelist: Collection[str]) -> ChangeFilter:
    """Keep only changes to parameters the session file whitelists; report the rest."""
    accepted = {k: v for k, v in changes.items() if k in whitelist}
    rejected = {k: v for k, v in changes.items() if k not in whitelist}
    return ChangeFilter(MappingProxyType(accepted), MappingProxyType(rejected))


def route(verdict: Verdict) -> Route:
    """Where a verdict sends the session; a reviewer error always pauses."""
    if verdict.is_reviewer_error:
        return Route.PAUSE
    return ROUTES[verdict.decision]


def decision_schema(change_keys: Collection[str] = (), *, strict: bool = False) -> dict[str, Any]:
    """JSON Schema of the answer; `strict` meets OpenAI structured-output rules for codex."""
    base: dict[str, Any] = {
        "decision": {"type": "string", "enum": [d.value for d in Decision]},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "gate_id": {"type": "string"},
        "nonce": {"type": "string"},
    }
    if strict:
        # Strict mode cannot express free-form maps, so each whitelisted parameter becomes a
        # required, nullable property (null = leave unchanged; see drop_null_changes).
        scalar = {"type": ["string", "number", "integer", "boolean", "null"]}
        keys = sorted(change_keys)
        base["changes"] = {
            "type": "object",
            "properties": {key: scalar for key in keys},
            "required": keys,
            "additionalProperties": False,
        }
    else:
        base["changes"] = {"type": "object"}
    return {
        "type": "object",
        "properties": base,
        "required": ["decision", "reasons", "changes", "gate_id", "nonce"],
        "additionalProperties": False,
    }


def drop_null_changes(verdict: Verdict) -> Verdict:
    """Treat `null` change values as 'leave unchanged' (how strict schemas say 'no change')."""
    kept = {k: v for k, v in verdict.changes.items() if v is not None}
    if len(kept) == len(verdict.changes):
        return verdict
    return Verdict(verdict.decision, verdict.reasons, MappingProxyType(kept), verdict.error)
