"""The gate registry, option models, spec-time validation and the `approval` kind."""

from __future__ import annotations

import json

import pytest

from phasegate.gates import GATE_KINDS, GATE_OPTION_MODELS, GateStatus, validate_gate_options


def test_builtin_kinds_are_registered_with_option_models() -> None:
    assert {"policy", "threshold", "artifact", "approval"} <= set(GATE_KINDS)
    assert {"policy", "threshold", "artifact", "approval"} <= set(GATE_OPTION_MODELS)


@pytest.mark.parametrize("kind", ["policy", "threshold", "artifact", "approval"])
def test_every_option_field_is_documented(kind: str) -> None:
    schema = GATE_OPTION_MODELS[kind].model_json_schema()
    json.dumps(schema)  # a README/JSON-schema reference can be generated from it
    models = [schema, *schema.get("$defs", {}).values()]
    for model in models:
        for name, field in model.get("properties", {}).items():
            assert field.get("description"), (
                f"{kind}: {model.get('title')}.{name} has no description"
            )


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown gate kind 'thresold'; known kinds: .*approval.*threshold"
    ):
        validate_gate_options("thresold", {})


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(
        ValueError, match=r"gate kind 'approval': invalid options: mesage: Extra inputs"
    ):
        validate_gate_options("approval", {"mesage": "typo"})


def test_approval_is_pending_with_its_message(make_context) -> None:
    options = {"message": "Read the pilot samples in CHECKPOINT.md, then approve."}
    validate_gate_options("approval", options)
    result = GATE_KINDS["approval"]().evaluate(make_context(options))
    assert result.status is GateStatus.PENDING
    assert result.summary == options["message"]
    assert result.evidence["message"] == options["message"] and result.evidence["phase"] == "pilot"


def test_approval_has_a_default_message(make_context) -> None:
    result = GATE_KINDS["approval"]().evaluate(make_context({}))
    assert result.status is GateStatus.PENDING and result.summary
