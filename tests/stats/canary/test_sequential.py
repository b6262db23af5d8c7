"""The verdict may be checked after every window: simulated A/B traffic, 200 seeded trials
of 50 windows each.

Under no difference, the anytime-valid sequence gives a false ``better``/``worse`` in at
most ``alpha`` of the trials (up to Monte-Carlo error), while a fixed-sample two-proportion
z-test looked at after every window does not. With a real difference the verdict comes,
and the sequence covers the true difference at every window in at least ``1 - alpha`` of
the trials.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, norm

from mlwatch.stats.canary import difference_interval, proportion_stats, verdict

TRIALS, WINDOWS, PER_WINDOW, ALPHA = 200, 50, 100, 0.05
# Monte-Carlo slack: the count of false verdicts among 200 trials at a true rate of alpha
# stays below this with probability 0.99 (binomial upper quantile).
Run = tuple[np.ndarray, np.ndarray, np.ndarray]
MAX_FALSE = binom.ppf(0.99, TRIALS, ALPHA)  # 19 of 200, a rate of 0.095


def simulate(p_a: float, p_b: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (n, correct A, correct B) after each window, (TRIALS, WINDOWS) each."""
    rng = np.random.default_rng(seed)
    k_a = rng.binomial(PER_WINDOW, p_a, (TRIALS, WINDOWS)).cumsum(axis=1)
    k_b = rng.binomial(PER_WINDOW, p_b, (TRIALS, WINDOWS)).cumsum(axis=1)
    n = np.broadcast_to(PER_WINDOW * np.arange(1, WINDOWS + 1), (TRIALS, WINDOWS))
    return n, k_a, k_b


def sequences(n: np.ndarray, k_a: np.ndarray, k_b: np.ndarray) -> np.ndarray:
    """The confidence sequence of B - A after every window, (TRIALS, WINDOWS, 2)."""
    out = np.empty((*n.shape, 2))
    for idx in np.ndindex(n.shape):
        a = proportion_stats(int(k_a[idx]), int(n[idx]))
        b = proportion_stats(int(k_b[idx]), int(n[idx]))
        out[idx] = difference_interval(a, b, alpha=ALPHA, tune_n=1000)[1]
    return out


def z_test_rejects(n: np.ndarray, k_a: np.ndarray, k_b: np.ndarray) -> np.ndarray:
    """The pooled two-proportion z-test at ALPHA (fixed sample), after every window."""
    p_a, p_b, pooled = k_a / n, k_b / n, (k_a + k_b) / (2 * n)
    z = (p_b - p_a) / np.sqrt(pooled * (1 - pooled) * 2 / n)
    return np.asarray(2 * norm.sf(np.abs(z)) < ALPHA)


def decided(cs: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """The verdict after every window, as strings (TRIALS, WINDOWS)."""
    out: np.ndarray = np.vectorize(lambda lo, hi: verdict(lo, hi, margin, higher_is_better=True))(
        cs[..., 0], cs[..., 1]
    )
    return out


@pytest.fixture(scope="module")
def null_run() -> Run:
    return simulate(0.8, 0.8, seed=1)


def test_checking_every_window_keeps_the_false_verdict_rate(null_run: Run) -> None:
    verdicts = decided(sequences(*null_run))
    false = np.isin(verdicts, ["better", "worse"]).any(axis=1).sum()
    assert false <= MAX_FALSE, f"{false} of {TRIALS} trials ended in a false verdict"


def test_a_fixed_sample_test_checked_every_window_does_not(null_run: Run) -> None:
    once = z_test_rejects(*null_run)[:, -1].sum()  # looked at once: about alpha
    assert once <= MAX_FALSE
    peeking = z_test_rejects(*null_run).any(axis=1).sum()
    assert peeking > MAX_FALSE, f"peeking rejected in only {peeking} of {TRIALS} trials"


def test_a_real_difference_is_found_and_covered() -> None:
    n, k_a, k_b = simulate(0.80, 0.85, seed=2)
    cs = sequences(n, k_a, k_b)
    verdicts = decided(cs, margin=0.01)
    assert not (verdicts == "worse").any()
    found = (verdicts == "better").any(axis=1).mean()
    assert found >= 0.9, f"better within {WINDOWS} windows in only {found:.0%} of trials"
    covered = ((cs[..., 0] <= 0.05) & (cs[..., 1] >= 0.05)).all(axis=1).sum()
    assert TRIALS - covered <= MAX_FALSE, f"{TRIALS - covered} trials missed the truth"


def test_no_difference_is_declared_within_a_margin() -> None:
    n, k_a, k_b = simulate(0.8, 0.8, seed=3)
    verdicts = decided(sequences(n, k_a, k_b), margin=0.05)
    assert (verdicts[:, -1] == "no difference").mean() >= 0.9


def test_the_check_would_catch_a_sequence_too_narrow(null_run: Run) -> None:
    """The false-verdict check has power: the same sequences 30 % narrower fail it."""
    cs = sequences(*null_run)
    mid, half = cs.mean(axis=-1), (cs[..., 1] - cs[..., 0]) / 2
    narrow = np.stack([mid - 0.7 * half, mid + 0.7 * half], axis=-1)
    false = np.isin(decided(narrow), ["better", "worse"]).any(axis=1).sum()
    assert false > MAX_FALSE


def test_a_canary_with_a_tenth_of_the_traffic_keeps_the_false_verdict_rate() -> None:
    """Groups of different sizes (10 % canary) and skewed per-row values (a loss) of equal
    means, the small group four times the variance: a variance with the group sizes mixed
    up fails this (51 of 200)."""
    rng = np.random.default_rng(4)
    n_a, n_b = 180, 20  # rows per window
    false = 0
    for _ in range(TRIALS):
        xa = rng.exponential(0.4, n_a * WINDOWS)
        xb = rng.gamma(0.25, 1.6, n_b * WINDOWS)  # mean 0.4 too, four times the variance
        for w in range(1, WINDOWS + 1):
            a, b = xa[: n_a * w], xb[: n_b * w]
            if len(b) < 100:  # min_samples
                continue
            stats_a = (len(a), float(a.mean()), float(a.var(ddof=1)))
            stats_b = (len(b), float(b.mean()), float(b.var(ddof=1)))
            lo, hi = difference_interval(stats_a, stats_b, alpha=ALPHA, tune_n=1000)[1]
            if verdict(lo, hi, 0.0, higher_is_better=False) != "not enough data":
                false += 1
                break
    assert false <= MAX_FALSE, f"{false} of {TRIALS} trials ended in a false verdict"
