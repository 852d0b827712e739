"""The `artifact` gate: files present and non-empty; JSONL rows validate against a named schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from phasegate.gates import GATE_KINDS, GateStatus, validate_gate_options
from phasegate.gates.artifact import JSONL_SCHEMAS, register_schema

PILOT = "{artifacts}/pilot/pilot_data.jsonl"


def artifacts(tmp_path: Path) -> Path:
    folder = tmp_path / "runs/r1/artifacts/pilot"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def rows(n: int) -> str:
    return "".join(
        json.dumps({"instruction": f"q{i}", "response": f"a{i}", "critic": "A"}) + "\n"
        for i in range(n)
    )


def evaluate(make_context, options: dict):
    return GATE_KINDS["artifact"]().evaluate(make_context(options))


def test_present_files_and_valid_rows_pass(tmp_path: Path, make_context) -> None:
    folder = artifacts(tmp_path)
    (folder / "qc.json").write_text("{}")
    (folder / "pilot_data.jsonl").write_text(rows(3) + "\n")  # a trailing blank line is not a row
    result = evaluate(
        make_context,
        {
            "files": ["{artifacts}/pilot/qc.json"],
            "jsonl": {"path": PILOT, "schema": "pilot_row", "min_rows": 3},
        },
    )
    assert result.status is GateStatus.PASS, result.summary
    assert result.metrics == {"files_ok": 1.0, "rows": 3.0, "invalid_rows": 0.0}
    assert (
        result.summary
        == "1 file(s) present and non-empty; pilot_data.jsonl: 3 valid pilot_row row(s)"
    )


def test_missing_and_empty_files_fail(tmp_path: Path, make_context) -> None:
    folder = artifacts(tmp_path)
    (folder / "empty.json").write_text("")
    (folder / "sub").mkdir()
    names = ["missing.json", "empty.json", "sub"]
    result = evaluate(make_context, {"files": [f"{{artifacts}}/pilot/{n}" for n in names]})
    assert result.status is GateStatus.FAIL
    assert [f.get("problem") for f in result.evidence["files"]] == [
        "missing",
        "empty",
        "not a regular file",
    ]
    assert "missing.json: missing" in result.summary and "empty.json: empty" in result.summary


def test_bad_rows_are_reported_with_line_numbers(tmp_path: Path, make_context) -> None:
    lines = [
        json.dumps({"instruction": "ok", "response": "fine"}),
        json.dumps({"instruction": "no response"}),
        "{not json",
        json.dumps(["a", "list"]),
        "",
        json.dumps({"instruction": "x", "response": 7}),
        json.dumps({"instruction": "", "response": "empty instruction"}),
    ]
    (artifacts(tmp_path) / "pilot_data.jsonl").write_text("\n".join(lines) + "\n")
    result = evaluate(
        make_context, {"jsonl": {"path": PILOT, "schema": "pilot_row", "max_reported": 4}}
    )
    assert result.status is GateStatus.FAIL
    jsonl = result.evidence["jsonl"]
    assert (jsonl["rows"], jsonl["invalid_rows"]) == (1, 5)
    reported = jsonl["first_invalid"]
    assert [r["line"] for r in reported] == [2, 3, 4, 6]
    assert "response: Field required" in reported[0]["error"]
    assert reported[1]["error"].startswith("not JSON")
    assert reported[2]["error"] == "not a JSON object (list)"
    assert "response: Input should be a valid string" in reported[3]["error"]
    assert "5 invalid row(s), first at line 2" in result.summary


def test_too_few_rows_fail(tmp_path: Path, make_context) -> None:
    (artifacts(tmp_path) / "pilot_data.jsonl").write_text(rows(9))
    result = evaluate(
        make_context, {"jsonl": {"path": PILOT, "schema": "pilot_row", "min_rows": 100}}
    )
    assert result.status is GateStatus.FAIL
    assert "9 valid row(s), needs at least 100" in result.summary


def test_empty_and_missing_jsonl(tmp_path: Path, make_context) -> None:
    (artifacts(tmp_path) / "pilot_data.jsonl").write_text("")
    assert (
        evaluate(make_context, {"jsonl": {"path": PILOT, "schema": "pilot_row"}}).status
        is GateStatus.FAIL
    )
    assert (
        evaluate(
            make_context, {"jsonl": {"path": PILOT, "schema": "pilot_row", "min_rows": 0}}
        ).status
        is GateStatus.PASS
    )
    missing = evaluate(
        make_context, {"jsonl": {"path": "{artifacts}/pilot/none.jsonl", "schema": "pilot_row"}}
    )
    assert missing.status is GateStatus.FAIL and "none.jsonl: missing" in missing.summary


def test_schema_registry_is_extensible(tmp_path: Path, make_context) -> None:
    class PairRow(BaseModel):
        chosen: str
        rejected: str

    register_schema("test_pair_row", PairRow)
    try:
        (artifacts(tmp_path) / "pairs.jsonl").write_text(
            json.dumps({"chosen": "a", "rejected": "b"}) + "\n"
        )
        options = {"jsonl": {"path": "{artifacts}/pilot/pairs.jsonl", "schema": "test_pair_row"}}
        validate_gate_options("artifact", options)
        assert evaluate(make_context, options).status is GateStatus.PASS
    finally:
        del JSONL_SCHEMAS["test_pair_row"]


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({}, "needs `files`, `jsonl` or both"),
        (
            {"jsonl": {"path": PILOT, "schema": "nope"}},
            "unknown JSONL schema 'nope'; known schemas: instruction_row, pilot_row",
        ),
        ({"jsonl": {"path": PILOT, "schema": "pilot_row", "min_rows": -1}}, "jsonl.min_rows"),
        ({"files": ["{outputs}/x"]}, "unknown placeholder"),
    ],
)
def test_bad_options(bad: dict, says: str) -> None:
    with pytest.raises(ValueError, match="gate kind 'artifact'") as caught:
        validate_gate_options("artifact", bad)
    assert says in str(caught.value)
