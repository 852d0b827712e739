"""The `threshold` gate: safe rule parsing and evaluation on edge values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phasegate.gates import GATE_KINDS, GateStatus, validate_gate_options
from phasegate.gates.threshold import parse_rule


def run(make_context, tmp_path: Path, metrics: object, *rules: str, raw: str | None = None):
    """Write the metrics file into the run's artifacts and evaluate `rules` over it."""
    path = tmp_path / "runs/r1/artifacts/pilot/qc.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(raw if raw is not None else json.dumps(metrics))
    options = {"file": "{artifacts}/pilot/qc.json", "rules": list(rules)}
    return GATE_KINDS["threshold"]().evaluate(make_context(options))


@pytest.mark.parametrize(
    ("text", "metric", "op", "bound"),
    [
        ("runaway_rate < 0.05", "runaway_rate", "<", 0.05),
        ("delimiter_leakage == 0", "delimiter_leakage", "==", 0.0),
        ("critic_acceptance>=0.5", "critic_acceptance", ">=", 0.5),
        ("  metrics.qc.runaway_rate <= 5e-2 ", "metrics.qc.runaway_rate", "<=", 0.05),
        ("loss-delta != -1.5", "loss-delta", "!=", -1.5),
        ("results.0.acc > .9", "results.0.acc", ">", 0.9),
    ],
)
def test_parse_rule(text: str, metric: str, op: str, bound: float) -> None:
    rule = parse_rule(text)
    assert (rule.metric, rule.op, rule.bound) == (metric, op, bound)


@pytest.mark.parametrize(
    "text",
    [
        "runaway_rate <",
        "runaway_rate = 0.05",
        "runaway_rate < nan",
        "runaway_rate < inf",
        "< 0.05",
        "__import__('os').system('x') < 1",
        "a < 1 and b > 2",
        "a < 0.05%",
        "a =< 1",
        "",
        "a <> 1",
    ],
)
def test_malformed_rules_raise_a_clear_value_error(text: str) -> None:
    with pytest.raises(
        ValueError, match=r"invalid threshold rule .*expected '<metric> <op> <number>'"
    ):
        parse_rule(text)


def test_malformed_rule_is_caught_at_spec_check_time() -> None:
    with pytest.raises(ValueError, match=r"rules\[1\]: invalid threshold rule 'b = 3'"):
        validate_gate_options("threshold", {"file": "m.json", "rules": ["a < 1", "b = 3"]})
    with pytest.raises(ValueError, match="rules"):
        validate_gate_options("threshold", {"file": "m.json", "rules": []})


@pytest.mark.parametrize(
    ("value", "rule", "status"),
    [
        (0.05, "runaway_rate < 0.05", GateStatus.FAIL),  # equal to the bound: strict fails
        (0.05, "runaway_rate <= 0.05", GateStatus.PASS),  # equal to the bound: inclusive passes
        (0.0499, "runaway_rate < 0.05", GateStatus.PASS),
        (0.5, "runaway_rate > 0.5", GateStatus.FAIL),
        (0.5, "runaway_rate >= 0.5", GateStatus.PASS),
        (0, "runaway_rate == 0", GateStatus.PASS),
        (0.0, "runaway_rate == 0", GateStatus.PASS),
        (1, "runaway_rate != 1", GateStatus.FAIL),
        (-0.0, "runaway_rate >= 0", GateStatus.PASS),
    ],
)
def test_edge_values(
    make_context, tmp_path: Path, value: float, rule: str, status: GateStatus
) -> None:
    assert run(make_context, tmp_path, {"runaway_rate": value}, rule).status is status


@pytest.mark.parametrize(
    ("metrics", "raw", "says"),
    [
        ({"other": 1}, None, "metric 'runaway_rate' in "),
        ({"runaway_rate": True}, None, "not a number (bool True)"),
        ({"runaway_rate": "0.01"}, None, "not a number (str '0.01')"),
        ({"runaway_rate": None}, None, "not a number (NoneType None)"),
        ({"runaway_rate": [0.01]}, None, "not a number (list"),
        (None, '{"runaway_rate": NaN}', "NaN"),
        (None, '{"runaway_rate": 1' + "0" * 400 + "}", "too large for a float"),
    ],
)
def test_unusable_metric_fails_naming_metric_and_file(
    make_context, tmp_path: Path, metrics, raw, says
) -> None:
    result = run(make_context, tmp_path, metrics, "runaway_rate < 0.05", raw=raw)
    assert result.status is GateStatus.FAIL
    assert says in result.summary
    assert "runaway_rate" in result.summary and "qc.json" in result.summary
    assert result.evidence["rules"][0]["passed"] is False
    assert result.metrics == {}
    json.dumps(result.evidence, allow_nan=False)  # journaled as strict JSON


def test_nested_paths_and_list_indexes(make_context, tmp_path: Path) -> None:
    metrics = {"metrics": {"qc": {"runaway_rate": 0.01}}, "runs": [{"acc": 0.7}], "a.b": 3}
    result = run(
        make_context,
        tmp_path,
        metrics,
        "metrics.qc.runaway_rate < 0.05",
        "runs.0.acc >= 0.5",
        "a.b == 3",
    )
    assert result.status is GateStatus.PASS, result.summary
    assert result.metrics == {"metrics.qc.runaway_rate": 0.01, "runs.0.acc": 0.7, "a.b": 3.0}
    missing = run(make_context, tmp_path, metrics, "metrics.qc.leakage == 0", "runs.3.acc > 0")
    assert missing.status is GateStatus.FAIL
    assert "metrics.qc.leakage" in missing.summary and "runs.3.acc" in missing.summary


def test_evidence_lists_each_rule_with_its_value(make_context, tmp_path: Path) -> None:
    metrics = {"runaway_rate": 0.2, "delimiter_leakage": 0, "critic_acceptance": 0.8}
    result = run(
        make_context,
        tmp_path,
        metrics,
        "runaway_rate < 0.05",
        "delimiter_leakage == 0",
        "critic_acceptance >= 0.5",
    )
    assert result.status is GateStatus.FAIL
    assert [(r["rule"], r["actual"], r["passed"]) for r in result.evidence["rules"]] == [
        ("runaway_rate < 0.05", 0.2, False),
        ("delimiter_leakage == 0", 0.0, True),
        ("critic_acceptance >= 0.5", 0.8, True),
    ]
    assert result.summary == "1 of 3 threshold rule(s) fail: runaway_rate = 0.2, needs < 0.05"
    assert result.metrics == {
        "runaway_rate": 0.2,
        "delimiter_leakage": 0.0,
        "critic_acceptance": 0.8,
    }


@pytest.mark.parametrize(
    ("raw", "says"), [(None, "does not exist"), ("{not json", "not valid JSON")]
)
def test_missing_or_broken_file_fails_naming_the_file(
    make_context, tmp_path: Path, raw, says
) -> None:
    if raw is None:
        options = {"file": "{artifacts}/pilot/absent.json", "rules": ["a < 1"]}
        result = GATE_KINDS["threshold"]().evaluate(make_context(options))
        assert "absent.json" in result.summary
    else:
        result = run(make_context, tmp_path, None, "a < 1", raw=raw)
        assert "qc.json" in result.summary
    assert result.status is GateStatus.FAIL and says in result.summary


def test_top_level_array_is_a_missing_metric(make_context, tmp_path: Path) -> None:
    result = run(make_context, tmp_path, [1, 2], "a < 1")
    assert result.status is GateStatus.FAIL and "metric 'a'" in result.summary
