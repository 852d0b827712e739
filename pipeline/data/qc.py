"""Pilot QC: metrics over generated rows, the reference's default thresholds, qc_summary.json."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phasegate.gates.threshold import ThresholdRule, parse_rule
from phasegate.pipeline.data.dedup import normalize_text
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.files import atomic_write_json

# The reference pilot's thresholds, as rules the `threshold` gate parses ("metric op number").
DEFAULT_THRESHOLDS: dict[str, str] = {
    "runaway_rate": "runaway_rate < 0.05",
    "token_limit_rate": "token_limit_rate < 0.10",
    # The reference's "delimiter leakage = 0", on the data: a kept row that leaks is a defect.
    "leakage_count": "leakage_count == 0",
    # Leaky candidates are dropped, so this only guards the yield; the reference gives no bound.
    # 2% (300 of 15k) is a few stray delimiters; more means the prompt format or the stop strings
    # are wrong and the model keeps running on into the next turn.
    "leakage_rate": "leakage_rate < 0.02",
    "median_tokens": "median_tokens < 40",
    "instruction_acceptance": "instruction_acceptance >= 0.5",
    "pair_acceptance": "pair_acceptance >= 0.5",
}
# Added to the rules when the phase has a `target_kept`: a run that stopped short must not pass.
TARGET_RULE = "target_reached == 1"


def _rate(flags: Sequence[bool]) -> float | None:
    """The fraction of true flags, or None when there is nothing to measure."""
    return sum(flags) / len(flags) if flags else None


def _accepted(critique: Mapping[str, Any] | None) -> bool:
    """Whether a critique exists and chose A."""
    return bool(critique and critique["accepted"])


def _leaks(row: Mapping[str, Any]) -> bool:
    """Whether the row's instruction or response carries a delimiter, chat marker or special token."""
    generation = row.get("generation") or {}
    return bool(generation.get("leakage")) or row.get("instruction_status") == "leakage"


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Unique word n-grams / all word n-grams over the texts (normalized), None without any."""
    grams = []
    for text in texts:
        words = normalize_text(text).split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else None


def _diversity(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Distinct-1/2 over the kept responses and what the duplicate filter dropped.

    Responses, since they are what the model is trained to produce (instructions are kept apart
    by the duplicate filter). Corpus-wide, so the figures fall as the data grows: compare runs of
    one size, not the pilot with the scale.
    """
    responses = [r.get("response") or "" for r in rows if r.get("kept")]
    reasons = [r.get("drop_reason") for r in rows]
    near = reasons.count("near_duplicate")
    return {
        "distinct_1": distinct_n(responses, 1),
        "distinct_2": distinct_n(responses, 2),
        "n_duplicates": near + reasons.count("duplicate"),
        "n_near_duplicates": near,
        "near_duplicate_rate": near / len(rows) if rows else None,
    }


def qc_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """QC metrics over candidate rows; a rate with no rows to measure is None (never passes).

    A row holds `instruction_critique` and, when a response was generated, `generation`
    (runaway, hit_token_limit, leakage, n_new_tokens) and `pair_critique`; a row the duplicate
    filter dropped holds `drop_reason` ("duplicate" or "near_duplicate").
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
        # Kept rows only: leaky candidates are already dropped, and one stray leak among 15k
        # candidates must not stop a run whose data is clean (leakage_rate watches those).
        "leakage_count": sum(_leaks(r) for r in rows if r.get("kept")),
        "leakage_rate": _rate([_leaks(r) for r in rows]),
        "median_tokens": statistics.median(tokens) if tokens else None,
        # Over all candidates: one that never reached the critic (empty, truncated) is not accepted.
        "instruction_acceptance": _rate([_accepted(r.get("instruction_critique")) for r in rows]),
        "pair_acceptance": _rate([_accepted(r["pair_critique"]) for r in paired]),
        **_diversity(rows),
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


def merge_thresholds(
    overrides: Mapping[str, str] | None, *, target_kept: int | None = None
) -> dict[str, str]:
    """The default rules (with `target_reached == 1` when there is a target) with the session file's
    overrides (keyed by metric) applied."""
    rules = dict(DEFAULT_THRESHOLDS)
    if target_kept is not None:
        rules["target_reached"] = TARGET_RULE
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
