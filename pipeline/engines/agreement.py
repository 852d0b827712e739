"""How far two pilots of the same parameters agree, row by row (one engine against another)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_CRITIQUES = ("instruction_critique", "pair_critique")


def _rate(matches: Sequence[bool]) -> float | None:
    """The share of True, None when there is nothing to compare."""
    return sum(matches) / len(matches) if matches else None


def pilot_agreement(rows_a: Sequence[dict[str, Any]], rows_b: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Agreement of two pilots' candidate rows, matched by row id.

    `outputs`: rows whose instruction and response are the same text (what greedy decoding should give
    on both engines); `critic`: critic decisions (A or B) that are the same, over every critique both
    rows hold; `max_margin_diff`: the largest |margin_a - margin_b| over those critiques.
    """
    by_id = {row["id"]: row for row in rows_b}
    shared = [(row, by_id[row["id"]]) for row in rows_a if row["id"] in by_id]
    outputs = [a.get("instruction") == b.get("instruction") and a.get("response") == b.get("response")
               for a, b in shared]
    pairs = [(a[k], b[k]) for a, b in shared for k in _CRITIQUES if a.get(k) and b.get(k)]
    return {
        "rows": len(shared),
        "outputs": _rate(outputs),
        "critiques": len(pairs),
        "critic": _rate([x["label"] == y["label"] for x, y in pairs]),
        "max_margin_diff": max((abs(x["margin"] - y["margin"]) for x, y in pairs), default=None),
    }
