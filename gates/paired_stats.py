"""Statistics of a paired A/B evaluation, computed by statsmodels (no hand-written formulas).

Conventions for a paired table of base (A) and adapter (B) successes on the same items:
`b` = items only the base got right, `c` = items only the adapter got right. Edge cases are
defined, never NaN: no discordant pairs (b = c = 0) gives p = 1 (no evidence of a difference);
n = 0 gives the uninformative interval (0, 1); an empty p-value list gives no decisions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize


def _count(name: str, value: int) -> int:
    """A non-negative integer count, or ValueError naming it."""
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a non-negative integer count, not {value!r}")
    return int(value)


def _proportion(name: str, value: float) -> float:
    """A proportion in [0, 1], or ValueError naming it."""
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a proportion in [0, 1], not {value!r}")
    return float(value)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (binomial test on b vs c)."""
    b, c = _count("b", b), _count("c", c)
    if b + c == 0:
        return 1.0
    # Only the off-diagonal cells enter the exact test; the diagonal is set to 0.
    return float(mcnemar([[0, b], [c, 0]], exact=True).pvalue)


def wilson_ci(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials at level 1 - alpha; (0, 1) for n = 0."""
    k, n = _count("k", k), _count("n", n)
    if k > n:
        raise ValueError(f"k = {k} successes cannot exceed n = {n} trials")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), not {alpha!r}")
    if n == 0:
        return (0.0, 1.0)
    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    return (max(0.0, float(lo)), min(1.0, float(hi)))


def cohens_h(p1: float, p2: float) -> float:
    """Cohen's h = 2 asin(sqrt(p1)) - 2 asin(sqrt(p2)): positive when p1 > p2."""
    h = float(proportion_effectsize(_proportion("p1", p1), _proportion("p2", p2)))
    return 0.0 if math.isclose(h, 0.0, abs_tol=1e-15) else h


def benjamini_hochberg(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Which hypotheses are rejected with the false discovery rate controlled at alpha."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), not {alpha!r}")
    values = [_proportion("p-value", p) for p in pvalues]
    if not values:
        return []
    reject, _, _, _ = multipletests(values, alpha=alpha, method="fdr_bh")
    return [bool(r) for r in reject]


def bh_adjusted(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (reject where adjusted p <= alpha)."""
    values = [_proportion("p-value", p) for p in pvalues]
    if not values:
        return []
    return [float(p) for p in multipletests(values, method="fdr_bh")[1]]
