"""Calibration: the tests alarm about as often as they promise, and detect what they should.

200 seeded trials without drift: the false-alarm rate of KS and chi-square at
alpha = 0.05 must lie in [2 %, 8 %] (about two binomial standard deviations around 5 %).
A goodness-of-fit chi-square that takes the reference counts as exact (Evidently's) fails
this: it alarms in about a quarter of the trials. Power: a 0.1 sigma mean shift at
10,000 values per side must be detected in at least 95 % of the trials.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from mlwatch.stats import get_method
from mlwatch.stats.pairs import CategoryTable, ExactPair

ALPHA = 0.05
TRIALS = 200
PROBS = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
NAMES = ("a", "b", "c", "d", "e")


def ks_p(a: np.ndarray, b: np.ndarray) -> float:
    p = get_method("ks").compute(ExactPair(np.sort(a), np.sort(b))).p_value
    assert p is not None
    return p


def chi2_p(ref: np.ndarray, cur: np.ndarray) -> float:
    table = CategoryTable.from_counts(
        dict(zip(NAMES, ref.tolist(), strict=True)), dict(zip(NAMES, cur.tolist(), strict=True))
    )
    p = get_method("chisquare").compute(table).p_value
    assert p is not None
    return p


@pytest.mark.parametrize(("n", "mode"), [(1000, "exact"), (20_000, "asymp")])
def test_ks_false_alarm_rate(n: int, mode: str) -> None:
    rng = np.random.default_rng(20240501)
    alarms = 0
    for _ in range(TRIALS):
        a, b = rng.normal(size=n), rng.normal(size=n)
        alarms += ks_p(a, b) < ALPHA
    rate = alarms / TRIALS
    assert 0.02 <= rate <= 0.08, f"KS ({mode}) false-alarm rate {rate:.3f}"


def test_chisquare_false_alarm_rate() -> None:
    rng = np.random.default_rng(20240502)
    alarms = gof_alarms = 0
    for _ in range(TRIALS):
        ref, cur = rng.multinomial(1000, PROBS), rng.multinomial(1000, PROBS)
        alarms += chi2_p(ref, cur) < ALPHA
        gof_alarms += sps.chisquare(cur, f_exp=ref / ref.sum() * cur.sum()).pvalue < ALPHA
    rate = alarms / TRIALS
    assert 0.02 <= rate <= 0.08, f"chi-square false-alarm rate {rate:.3f}"
    assert gof_alarms / TRIALS > 0.15  # the goodness-of-fit variant is miscalibrated


def test_ks_power_for_a_tenth_of_a_sigma() -> None:
    rng = np.random.default_rng(20240503)
    trials = 100
    hits = sum(
        ks_p(rng.normal(size=10_000), rng.normal(0.1, 1, size=10_000)) < ALPHA
        for _ in range(trials)
    )
    assert hits / trials >= 0.95, f"KS power {hits / trials:.2f} for a 0.1 sigma shift"


def test_chisquare_power() -> None:
    """A shift of 3 points of share between categories at 10,000 per side."""
    rng = np.random.default_rng(20240504)
    shifted = np.array([0.37, 0.3, 0.15, 0.12, 0.06])
    trials = 100
    hits = sum(
        chi2_p(rng.multinomial(10_000, PROBS), rng.multinomial(10_000, shifted)) < ALPHA
        for _ in range(trials)
    )
    assert hits / trials >= 0.95, f"chi-square power {hits / trials:.2f}"
