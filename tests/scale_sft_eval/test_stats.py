"""gates/paired_stats.py against statsmodels and scipy computed directly, with the edge cases."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from phasegate.gates.paired_stats import (
    benjamini_hochberg,
    bh_adjusted,
    cohens_h,
    mcnemar_exact,
    wilson_ci,
)


@pytest.mark.parametrize(("b", "c"), [(10, 2), (2, 10), (3, 0), (5, 5), (0, 7), (40, 25), (1, 1)])
def test_mcnemar_exact_matches_statsmodels_and_the_binomial_test(b: int, c: int) -> None:
    expected = mcnemar([[17, b], [c, 9]], exact=True).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)
    # The exact McNemar test is a two-sided binomial test of b successes in b + c at p = 1/2.
    assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_mcnemar_known_value_and_no_discordant_pairs() -> None:
    assert mcnemar_exact(10, 2) == pytest.approx(0.03857421875)  # 2 * P(X <= 2), X ~ B(12, 1/2)
    assert mcnemar_exact(0, 0) == 1.0  # nothing to compare: no evidence of a difference


@pytest.mark.parametrize("bad", [(-1, 2), (1.5, 2), (True, 2)])
def test_mcnemar_refuses_non_counts(bad: tuple) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        mcnemar_exact(*bad)


@pytest.mark.parametrize(("k", "n", "alpha"), [(3, 10, 0.05), (0, 10, 0.05), (10, 10, 0.05),
                                               (37, 200, 0.01), (1, 1, 0.1)])
def test_wilson_ci_matches_statsmodels(k: int, n: int, alpha: float) -> None:
    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    got = wilson_ci(k, n, alpha)
    assert got == pytest.approx((max(0.0, lo), min(1.0, hi)), abs=1e-12)
    assert 0.0 <= got[0] <= k / n <= got[1] <= 1.0


def test_wilson_ci_edge_cases() -> None:
    assert wilson_ci(3, 10) == pytest.approx((0.10779126740630104, 0.6032218525388546))
    assert wilson_ci(0, 0) == (0.0, 1.0)  # nothing observed: every rate is possible
    with pytest.raises(ValueError, match="cannot exceed"):
        wilson_ci(5, 4)
    with pytest.raises(ValueError, match="alpha"):
        wilson_ci(1, 4, alpha=1.5)


@pytest.mark.parametrize(("p1", "p2"), [(0.7, 0.5), (0.5, 0.7), (0.0, 1.0), (0.25, 0.25)])
def test_cohens_h_is_the_arcsine_difference(p1: float, p2: float) -> None:
    expected = 2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2))
    assert cohens_h(p1, p2) == pytest.approx(expected, abs=1e-12)
    assert cohens_h(p1, p2) == pytest.approx(-cohens_h(p2, p1), abs=1e-12)


def test_cohens_h_refuses_a_non_proportion() -> None:
    with pytest.raises(ValueError, match="proportion"):
        cohens_h(1.2, 0.5)


def test_benjamini_hochberg_matches_statsmodels() -> None:
    pvalues = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]
    reject, adjusted, _, _ = multipletests(pvalues, alpha=0.05, method="fdr_bh")
    assert benjamini_hochberg(pvalues, 0.05) == list(reject) == [True, True] + [False] * 8
    assert bh_adjusted(pvalues) == pytest.approx(list(adjusted))
    # Step-up: a p-value above alpha / m * rank can still be rejected through a later rank.
    assert benjamini_hochberg([0.02, 0.03, 0.04], 0.05) == [True, True, True]


def test_benjamini_hochberg_edge_cases() -> None:
    assert benjamini_hochberg([], 0.05) == [] and bh_adjusted([]) == []
    assert benjamini_hochberg([1.0], 0.05) == [False]
    with pytest.raises(ValueError, match="proportion"):
        benjamini_hochberg([0.5, 2.0], 0.05)
