"""The `stat` gate and the evaluation summary it reads, on paired tables with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize

from phasegate.gates import GATE_KINDS, GATE_OPTION_MODELS, validate_gate_options
from phasegate.gates.base import GateContext, GateStatus
from phasegate.pipeline.evaluation.evaluate import summarize


def outcomes(both: int, b: int, c: int, neither: int, kind: str = "t") -> list[dict]:
    """Paired outcomes with the given cells: b = base only, c = adapter only."""
    cells = [(True, True)] * both + [(True, False)] * b + [(False, True)] * c + [(False, False)] * neither
    return [{"type": kind, "base": x, "adapter": y} for x, y in cells]


def gate_context(tmp_path: Path, summary: dict | None, **options) -> GateContext:
    """A gate context whose artifacts folder holds `summary` as eval_summary.json."""
    artifacts = tmp_path / "run" / "artifacts" / "eval"
    artifacts.mkdir(parents=True, exist_ok=True)
    if summary is not None:
        (artifacts / "eval_summary.json").write_text(json.dumps(summary))
    return GateContext(gate_id="eval.stat", phase_id="eval", options=options, session_dir=tmp_path,
                       run_dir=tmp_path / "run", artifacts_dir=artifacts)


def evaluate(tmp_path: Path, summary: dict | None, **options):
    return GATE_KINDS["stat"]().evaluate(gate_context(tmp_path, summary, **options))


def test_summary_numbers_match_statsmodels() -> None:
    summary = summarize(outcomes(20, 3, 15, 12), alpha=0.01, ci_level=0.95)
    overall = summary["overall"]
    table = [[20, 3], [15, 12]]
    assert (overall["n"], overall["b"], overall["c"], overall["both"], overall["neither"]) == (50, 3, 15, 20, 12)
    assert overall["mcnemar_p"] == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert overall["base"]["rate"] == 23 / 50 and overall["adapter"]["rate"] == 35 / 50
    assert overall["adapter"]["wilson_ci"] == pytest.approx(
        list(proportion_confint(35, 50, alpha=0.05, method="wilson")))
    assert overall["cohens_h"] == pytest.approx(proportion_effectsize(35 / 50, 23 / 50))
    assert overall["significant"] is True  # p = 0.0075 < 0.01


def test_summary_per_type_with_bh_decisions() -> None:
    rows = outcomes(5, 0, 14, 1, "strong") + outcomes(5, 2, 3, 10, "weak")
    summary = summarize(rows, alpha=0.05, ci_level=0.95)
    strong, weak = summary["per_type"]["strong"], summary["per_type"]["weak"]
    assert strong["mcnemar_p"] == pytest.approx(2 * 0.5**14)
    assert strong["bh_reject"] is True and weak["bh_reject"] is False
    assert summary["bh"]["rejected"] == ["strong"]
    assert strong["bh_adjusted_p"] == pytest.approx(min(1.0, 2 * strong["mcnemar_p"]))


def test_gate_passes_a_significant_improvement(tmp_path: Path) -> None:
    result = evaluate(tmp_path, summarize(outcomes(20, 3, 15, 12), 0.01, 0.95))
    assert result.status == GateStatus.PASS, result.summary
    numbers = result.evidence["results"]["overall"]
    assert (numbers["b"], numbers["c"]) == (3, 15)
    assert numbers["p"] == pytest.approx(mcnemar([[20, 3], [15, 12]], exact=True).pvalue)
    assert result.metrics["p"] == pytest.approx(numbers["p"]) and result.metrics["h"] > 0
    assert {"base_rate", "adapter_rate", "b", "c"} <= result.metrics.keys()


def test_gate_alpha_is_its_own(tmp_path: Path) -> None:
    summary = summarize(outcomes(20, 3, 15, 12), 0.01, 0.95)  # p = 0.0075
    result = evaluate(tmp_path, summary, alpha=0.005)
    assert result.status == GateStatus.FAIL and ">= alpha 0.005" in result.summary


def test_gate_fails_a_significant_regression_unless_either_direction(tmp_path: Path) -> None:
    summary = summarize(outcomes(20, 15, 3, 12), 0.01, 0.95)
    worse = evaluate(tmp_path, summary)
    assert worse.status == GateStatus.FAIL and "adapter not better" in worse.summary
    assert evaluate(tmp_path, summary, direction="either").status == GateStatus.PASS


@pytest.mark.parametrize(("rows", "message"), [
    (outcomes(10, 0, 0, 5), "no discordant pairs"),
    ([], "no paired items"),
])
def test_gate_edge_cases_fail_with_the_reason(tmp_path: Path, rows: list, message: str) -> None:
    result = evaluate(tmp_path, summarize(rows, 0.01, 0.95))
    assert result.status == GateStatus.FAIL and message in result.summary
    if not rows:
        assert result.evidence["results"]["overall"]["p"] == 1.0


def test_gate_scopes(tmp_path: Path) -> None:
    summary = summarize(outcomes(5, 0, 14, 1, "strong") + outcomes(5, 2, 3, 10, "weak"), 0.01, 0.95)
    assert evaluate(tmp_path, summary, scope="strong").status == GateStatus.PASS
    every = evaluate(tmp_path, summary, scope="every_type")
    assert every.status == GateStatus.FAIL and every.summary.startswith("weak:")
    missing = evaluate(tmp_path, summary, scope="nope")
    assert missing.status == GateStatus.FAIL and "strong, weak" in missing.summary


def test_gate_without_a_summary_says_what_to_run(tmp_path: Path) -> None:
    result = evaluate(tmp_path, None)
    assert result.status == GateStatus.FAIL and "run the evaluate phase" in result.summary


def test_gate_kind_is_registered_with_documented_options() -> None:
    assert "stat" in GATE_KINDS and "stat" in GATE_OPTION_MODELS
    fields = GATE_OPTION_MODELS["stat"].model_fields
    assert fields["file"].default == "{artifacts}/eval_summary.json"
    assert fields["alpha"].default == 0.01 and fields["direction"].default == "improve"
    assert fields["scope"].default == "overall"
    assert all(f.description for f in fields.values())
    validate_gate_options("stat", {"alpha": 0.05})
    with pytest.raises(ValueError, match="direction"):
        validate_gate_options("stat", {"direction": "sideways"})
    with pytest.raises(ValueError, match="placeholder"):
        validate_gate_options("stat", {"file": "{nope}/x.json"})
