"""QC metrics on hand-made rows, edge values, threshold rules and qc_summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phasegate.pipeline.data.qc import (
    DEFAULT_THRESHOLDS,
    check_rules,
    merge_thresholds,
    qc_metrics,
    write_qc_summary,
)
from phasegate.pipeline.errors import PhaseInputError


def row(
    *,
    accepted: bool = True,
    tokens: int | None = 10,
    runaway=False,
    limit=False,
    leak=(),
    pair=True,
) -> dict:
    """A candidate row; tokens=None means no response was generated."""
    out = {
        "instruction_critique": {"accepted": accepted},
        "generation": None,
        "pair_critique": None,
        "kept": False,
    }
    if tokens is not None:
        out["generation"] = {
            "n_new_tokens": tokens,
            "runaway": runaway,
            "hit_token_limit": limit,
            "leakage": list(leak),
        }
        out["pair_critique"] = {"accepted": pair}
        out["kept"] = accepted and pair and not runaway and not leak
    return out


def test_metrics_on_hand_made_rows() -> None:
    rows = [
        row(tokens=10),
        row(tokens=20, runaway=True, limit=True),
        row(tokens=30, leak=["Instruction:"], pair=False),
        row(tokens=41),
        row(accepted=False, tokens=None),
        {"instruction_critique": None, "generation": None},  # an unparseable instruction
    ]
    m = qc_metrics(rows)
    assert m["n_candidates"] == 6 and m["n_responses"] == 4 and m["n_kept"] == 2
    assert m["runaway_rate"] == 0.25 and m["token_limit_rate"] == 0.25
    assert m["leakage_count"] == 0  # the leaky row was dropped: the data is clean
    assert m["leakage_rate"] == pytest.approx(1 / 6)
    assert m["median_tokens"] == 25.0
    assert m["instruction_acceptance"] == pytest.approx(4 / 6)
    assert m["pair_acceptance"] == 0.75


def test_leakage_count_is_kept_rows_that_leak_and_the_rate_counts_every_candidate() -> None:
    leaky_kept = {**row(tokens=12, leak=["Response:"]), "kept": True}  # a defect upstream of QC
    leaky_instruction = {**row(accepted=False, tokens=None), "instruction_status": "leakage"}
    m = qc_metrics([leaky_kept, leaky_instruction, row(tokens=10), row(tokens=30, leak=["###"])])
    assert m["leakage_count"] == 1 and m["leakage_rate"] == 0.75
    verdicts = {r["metric"]: r["passed"] for r in check_rules(m, DEFAULT_THRESHOLDS)}
    assert verdicts["leakage_count"] is False and verdicts["leakage_rate"] is False


def test_diversity_over_kept_responses_and_the_near_duplicate_rate() -> None:
    rows = [
        {**row(tokens=3), "response": "The cat sat."},
        {**row(tokens=3), "response": "the cat ran"},
        {**row(tokens=3, pair=False), "response": "unkept words only"},
        {**row(tokens=3), "kept": False, "drop_reason": "near_duplicate"},
        {**row(tokens=3), "kept": False, "drop_reason": "duplicate"},
    ]
    m = qc_metrics(rows)
    assert m["distinct_1"] == pytest.approx(4 / 6)  # the, cat, sat, ran of 6 words
    assert m["distinct_2"] == pytest.approx(3 / 4)  # (the cat) twice, (cat sat), (cat ran)
    assert m["near_duplicate_rate"] == pytest.approx(1 / 5)
    assert m["n_near_duplicates"] == 1 and m["n_duplicates"] == 2
    assert not {"distinct_1", "distinct_2", "near_duplicate_rate"} & DEFAULT_THRESHOLDS.keys()


def test_no_rows_gives_no_numbers_and_fails_every_rate_rule() -> None:
    m = qc_metrics([])
    assert m["runaway_rate"] is None and m["median_tokens"] is None and m["leakage_count"] == 0
    assert m["leakage_rate"] is None and m["distinct_1"] is None and m["near_duplicate_rate"] is None
    verdicts = {r["metric"]: r["passed"] for r in check_rules(m, DEFAULT_THRESHOLDS)}
    assert verdicts == {name: name == "leakage_count" for name in DEFAULT_THRESHOLDS}


@pytest.mark.parametrize(
    ("metric", "value", "passes"),
    [
        ("runaway_rate", 0.0499, True),
        ("runaway_rate", 0.05, False),
        ("token_limit_rate", 0.10, False),
        ("leakage_count", 0, True),
        ("leakage_count", 1, False),
        ("leakage_rate", 0.0199, True),
        ("leakage_rate", 0.02, False),
        ("median_tokens", 39.5, True),
        ("median_tokens", 40, False),
        ("instruction_acceptance", 0.5, True),
        ("pair_acceptance", 0.4999, False),
    ],
)
def test_default_thresholds_at_their_edges(metric: str, value: float, passes: bool) -> None:
    [result] = check_rules({metric: value}, {metric: DEFAULT_THRESHOLDS[metric]})
    assert result["passed"] is passes


def test_default_rules_are_the_references() -> None:
    assert DEFAULT_THRESHOLDS == {
        "runaway_rate": "runaway_rate < 0.05",
        "token_limit_rate": "token_limit_rate < 0.10",
        "leakage_count": "leakage_count == 0",
        "leakage_rate": "leakage_rate < 0.02",
        "median_tokens": "median_tokens < 40",
        "instruction_acceptance": "instruction_acceptance >= 0.5",
        "pair_acceptance": "pair_acceptance >= 0.5",
    }


def test_overrides_replace_one_rule() -> None:
    rules = merge_thresholds({"median_tokens": "median_tokens < 60"})
    assert (
        rules["median_tokens"] == "median_tokens < 60"
        and rules["runaway_rate"] == "runaway_rate < 0.05"
    )
    with pytest.raises(PhaseInputError, match="must test the metric"):
        merge_thresholds({"median_tokens": "runaway_rate < 0.1"})


def test_a_malformed_rule_is_a_phase_input_error_naming_it() -> None:
    with pytest.raises(PhaseInputError, match="'median_tokens is small'.*metric op number"):
        merge_thresholds({"median_tokens": "median_tokens is small"})
    with pytest.raises(PhaseInputError, match="'x >'"):
        check_rules({"x": 1.0}, {"x": "x >"})


def test_rules_are_read_as_the_threshold_gate_reads_them() -> None:
    [result] = check_rules({"x": 0.002}, {"x": " x>=1e-3 "})
    assert result == {"rule": " x>=1e-3 ", "metric": "x", "value": 0.002, "passed": True}


def test_write_qc_summary(tmp_path: Path) -> None:
    metrics = qc_metrics([row(tokens=12), row(tokens=14)])
    summary = write_qc_summary(tmp_path / "qc_summary.json", metrics, merge_thresholds(None))
    on_disk = json.loads((tmp_path / "qc_summary.json").read_text())
    assert on_disk == summary and on_disk["passed"] is True and on_disk["failed_rules"] == []
    assert (
        on_disk["runaway_rate"] == 0.0
    )  # metrics sit at top level, where the threshold gate looks
    assert len(on_disk["thresholds"]) == len(DEFAULT_THRESHOLDS)
