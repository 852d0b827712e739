"""The strict decision contract: extraction, validation, gate/nonce binding, routing."""

from __future__ import annotations

import json

import pytest

from phasegate.reviews import Decision, Route, filter_changes, parse_decision, route
from phasegate.reviews.decision import decision_schema, drop_null_changes, find_json_objects

GATE, NONCE = "pilot-review", "n0nce"


def obj(decision: str = "SCALE", **extra: object) -> str:
    value = {
        "decision": decision,
        "reasons": ["ok"],
        "changes": {},
        "gate_id": GATE,
        "nonce": NONCE,
    }
    value.update(extra)
    return json.dumps(value)


def parse(text: str):
    return parse_decision(text, gate_id=GATE, nonce=NONCE)


def test_bare_object_is_accepted() -> None:
    verdict = parse(obj())
    assert verdict.decision is Decision.SCALE and verdict.error is None
    assert verdict.reasons == ("ok",)


def test_fenced_object_with_prose_around_it_is_accepted() -> None:
    text = (
        f"Here is my review.\n```json\n{obj('ITERATE', changes={'temperature': 0.7})}\n```\nThanks"
    )
    verdict = parse(text)
    assert verdict.decision is Decision.ITERATE
    assert dict(verdict.changes) == {"temperature": 0.7}


def test_identical_duplicates_are_one_answer() -> None:
    assert parse(obj() + "\n```json\n" + obj() + "\n```").error is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no json here at all", "no JSON object"),
        ('{"verdict": "SCALE"}', "no JSON object"),
        (obj() + obj("STOP"), "conflicting"),
        (obj("ITERATE", changes={"a": 1}) + obj("ITERATE", changes={"a": 2}), "different changes"),
        (obj("APPROVE"), "invalid"),
        (obj(gate_id="other-gate"), "names gate 'other-gate'"),
        (obj(nonce="forged"), "nonce does not match"),
        (
            json.dumps({"decision": "SCALE", "reasons": ["ok"], "changes": {}, "gate_id": GATE}),
            "nonce",
        ),
        (obj(confidence=0.9), "invalid"),
        (obj(reasons="fine"), "invalid"),
    ],
)
def test_every_bad_answer_is_investigate_and_flagged(text: str, reason: str) -> None:
    verdict = parse(text)
    assert verdict.decision is Decision.INVESTIGATE
    assert verdict.is_reviewer_error and reason in (verdict.error or "")
    assert route(verdict) is Route.PAUSE


def test_nested_objects_do_not_count_as_separate_answers() -> None:
    assert len(find_json_objects('x {"a": {"decision": "STOP"}} y')) == 1
    assert parse(obj(changes={"nested": {"decision": "STOP"}})).error is None


def test_routes() -> None:
    assert route(parse(obj("SCALE"))) is Route.ADVANCE
    assert route(parse(obj("ITERATE"))) is Route.RETRY
    assert route(parse(obj("INVESTIGATE"))) is Route.PAUSE
    assert route(parse(obj("STOP"))) is Route.STOP


def test_iterate_changes_are_filtered_to_the_whitelist() -> None:
    verdict = parse(obj("ITERATE", changes={"temperature": 0.7, "loader": "mine.py"}))
    split = filter_changes(verdict.changes, {"temperature", "count"})
    assert dict(split.accepted) == {"temperature": 0.7}
    assert dict(split.rejected) == {"loader": "mine.py"}


def test_null_changes_mean_unchanged() -> None:
    verdict = drop_null_changes(parse(obj("ITERATE", changes={"temperature": None, "count": 50})))
    assert dict(verdict.changes) == {"count": 50}


def test_strict_schema_lists_every_key_and_forbids_extras() -> None:
    schema = decision_schema(["count", "temperature"], strict=True)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
    changes = schema["properties"]["changes"]
    assert changes["required"] == ["count", "temperature"]
    assert decision_schema()["properties"]["changes"] == {"type": "object"}
