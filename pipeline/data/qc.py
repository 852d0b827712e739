"""Pilot QC: metrics over generated rows, the reference's default thresholds, qc_summary.json."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phasegate.gates.threshold import ThresholdRule, parse_rule
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.files import atomic_write_json

# The reference pilot's thresholds, as rules the `threshold` gate parses ("metric op number").
DEFAULT_THRESHOLDS: dict[str, str] = {
    "runaway_rate": "runaway_rate < 0.05",
    "token_limit_rate": "token_limit_rate < 0.10",
    "leakage_count": "leakage_count == 0",
    "median_tokens": "median_tokens < 40",
    "instruction_acceptance": "instruction_acceptance >= 0.5",
    "pair_acceptance": "pair_acceptance >= 0.5",
}


def _rate(flags: Sequence[bool]) -> float | None:
    """The fraction of true flags, or None when there is nothing to measure."""
    return sum(flags) / len(flags) if flags else None


def _accepted(critique: Mapping[str, Any] | None) -> bool:
    """Whether a critique exists and chose A."""
    return bool(critique and critique["accepted"])


def qc_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """QC metrics over candidate rows; a rate with no rows to measure is None (never passes).

    A row holds `instruction_critique` and, when a response was generated, `generation`
    (runaway, hit_token_limit, leakage, n_new_tokens) and `pair_critique`.
    """
    answered = [r for r in rows if r.get("generation")]
    paired = [r for r in answered if r.get("pair_critique")]
    gens = [r["generation"] for r in answered]
    tokens = [g["n_new_tokens"] for g in gens]
    return {
        "n_candidates": len(rows),
        "n_responses": len(answered),
        "n_kept": sum(bool(r.get("kept")) for r in rows),
        "runaway_rate": _rate([bool(g["runaway"]) for g in gens]),
        "token_limit_rate": _rate([bool(g["hit_token_limit"]) for g in gens]),
        "leakage_count": sum(bool(g["leakage"]) for g in gens),
        "median_tokens": statistics.median(tokens) if tokens else None,
        # Over all candidates: one that never reached the critic (empty, truncated) is not accepted.
        "instruction_acceptance": _rate([_accepted(r.get("instruction_critique")) for r in rows]),
        "pair_acceptance": _rate([_accepted(r["pair_critique"]) for r in paired]),
    }


def _rule(text: str) -> ThresholdRule:
    """The `threshold` gate's parse of one QC rule, so QC and the gate read rules alike."""
    try:
        return parse_rule(text)
    except ValueError:
        raise PhaseInputError(
            f"threshold rule {text!r} is not of the form 'metric op number' "
            "(op one of < <= > >= == !=), e.g. 'runaway_rate < 0.05'"
        ) from None


def merge_thresholds(overrides: Mapping[str, str] | None) -> dict[str, str]:
    """The default rules with the session file's overrides (keyed by metric) applied."""
    rules = dict(DEFAULT_THRESHOLDS)
    for key, rule in (overrides or {}).items():
        if _rule(rule).metric != key:
            raise PhaseInputError(f"threshold {key!r} = {rule!r} must test the metric {key!r}")
        rules[key] = rule
    return rules


def check_rules(metrics: Mapping[str, Any], rules: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each rule with the metric's value and whether it holds (a missing value fails)."""
    results = []
    for rule in rules.values():
        parsed = _rule(rule)
        value = metrics.get(parsed.metric)
        passed = value is not None and parsed.holds(value)
        results.append({"rule": rule, "metric": parsed.metric, "value": value, "passed": passed})
    return results


def write_qc_summary(
    path: str | Path, metrics: Mapping[str, Any], rules: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Write `qc_summary.json` and return it: the metrics at top level (so the `threshold`
    gate reads `runaway_rate < 0.05` from it directly), each rule's verdict, overall pass."""
    checked = check_rules(metrics, rules or DEFAULT_THRESHOLDS)
    summary = {
        **metrics,
        "thresholds": checked,
        "passed": all(r["passed"] for r in checked),
        "failed_rules": [r["rule"] for r in checked if not r["passed"]],
    }
    atomic_write_json(path, summary)
    return summary
