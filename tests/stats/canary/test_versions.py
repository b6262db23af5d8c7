"""compare_versions against scikit-learn and SciPy on the same data, and its shape."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics

from mlwatch.stats.canary import CompareOptions, Sample, compare_versions, encode_classes


def classification(seed: int, p_correct: float, n: int = 3000) -> Sample:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < p_correct, y, (y + 1) % 3)
    proba = rng.dirichlet(np.ones(3), n) * 0.5
    proba[np.arange(n), pred] += 0.5
    latency = rng.lognormal(3.0, 0.5, n + 50)
    return Sample("classification", y, pred, proba, (0, 1, 2), latency, n + 50, 50)


def regression(seed: int, scale: float, n: int = 3000) -> Sample:
    rng = np.random.default_rng(seed)
    y = rng.normal(10, 2, n)
    return Sample("regression", y, y + rng.normal(0, scale, n), n_events=n)


@pytest.fixture(scope="module")
def pair() -> tuple[Sample, Sample]:
    return classification(1, 0.80), classification(2, 0.84, n=2500)


def test_differences_equal_sklearn(pair: tuple[Sample, Sample]) -> None:
    a, b = pair
    d = compare_versions(a, b).differences
    for kpi, oracle in (
        ("accuracy", metrics.accuracy_score),
        ("log_loss", lambda y, p: metrics.log_loss(y, p, labels=[0, 1, 2])),
        ("brier", lambda y, p: np.mean(((p - np.eye(3)[y]) ** 2).sum(axis=1))),
    ):
        args_a = (a.y_true, a.proba if kpi != "accuracy" else a.y_pred)
        args_b = (b.y_true, b.proba if kpi != "accuracy" else b.y_pred)
        assert d[kpi].baseline == pytest.approx(oracle(*args_a), abs=1e-9)
        assert d[kpi].difference == pytest.approx(oracle(*args_b) - oracle(*args_a), abs=1e-9)
    assert d["error_ratio"].difference == pytest.approx(50 / 2550 - 50 / 3050)


def test_regression_differences_equal_sklearn() -> None:
    a, b = regression(3, 1.0), regression(4, 1.2)
    d = compare_versions(a, b).differences
    for kpi, oracle in (
        ("mae", metrics.mean_absolute_error),
        ("mse", metrics.mean_squared_error),
        ("mape", metrics.mean_absolute_percentage_error),
    ):
        want = oracle(b.y_true, b.y_pred) - oracle(a.y_true, a.y_pred)
        assert d[kpi].difference == pytest.approx(want, rel=1e-9)
    assert d["mse"].verdict == "worse" and d["mae"].verdict == "worse"


def test_fixed_interval_is_scipy_normal_interval() -> None:
    a, b = regression(5, 1.0), regression(6, 1.1, n=2000)
    mae = compare_versions(a, b, CompareOptions(gate=["mae"])).differences["mae"]
    ea, eb = np.abs(a.y_true - a.y_pred), np.abs(b.y_true - b.y_pred)
    se = math.sqrt(ea.var(ddof=1) / len(ea) + eb.var(ddof=1) / len(eb))
    lo, hi = stats.norm.interval(0.95, loc=eb.mean() - ea.mean(), scale=se)
    assert mae.fixed_lower == pytest.approx(lo)
    assert mae.fixed_upper == pytest.approx(hi)
    # the percentile bootstrap of the same difference agrees to Monte-Carlo error
    boot = stats.bootstrap(
        (eb, ea),
        lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis),
        n_resamples=2000,
        method="percentile",
        random_state=np.random.default_rng(0),
    ).confidence_interval
    assert boot.low == pytest.approx(lo, abs=0.1 * se) and boot.high == pytest.approx(
        hi, abs=0.1 * se
    )
    # the anytime-valid sequence is wider, and contains the fixed interval
    assert mae.lower is not None and mae.upper is not None
    assert mae.lower < lo and hi < mae.upper


def test_accuracy_fixed_interval_matches_unpooled_two_proportion_interval(
    pair: tuple[Sample, Sample],
) -> None:
    a, b = pair
    acc = compare_versions(a, b, CompareOptions(gate=["accuracy"])).differences["accuracy"]
    assert acc.difference is not None
    width = (acc.fixed_upper or 0) - (acc.fixed_lower or 0)
    pa, pb = acc.baseline or 0, acc.candidate or 0
    se = math.sqrt(pa * (1 - pa) / len(a.y_true) + pb * (1 - pb) / len(b.y_true))
    assert width == pytest.approx(2 * stats.norm.isf(0.025) * se, rel=0.01)


def test_latency_quantile_intervals_cover_the_sample_quantiles(pair: tuple[Sample, Sample]) -> None:
    a, b = pair
    d = compare_versions(a, b).differences
    assert a.latency_ms is not None and b.latency_ms is not None
    for kpi, q in (("latency_p50", 0.5), ("latency_p99", 0.99)):
        want = np.quantile(b.latency_ms, q) - np.quantile(a.latency_ms, q)
        assert d[kpi].difference == pytest.approx(want)
        lo, flo, fhi = d[kpi].lower, d[kpi].fixed_lower, d[kpi].fixed_upper
        assert lo is not None and flo is not None and fhi is not None
        assert lo <= flo <= want <= fhi


def test_a_latency_regression_is_worse() -> None:
    a = classification(7, 0.8, n=5000)
    assert a.latency_ms is not None
    slower = a.latency_ms * 1.5
    b = Sample(a.task, a.y_true, a.y_pred, a.proba, a.classes, slower, a.n_events)
    result = compare_versions(
        a, b, CompareOptions(gate=["latency_p99"], margins={"latency_p99": 1})
    )
    assert result.differences["latency_p99"].verdict == "worse"
    assert result.verdict == "worse"


def test_shape_and_small_samples(pair: tuple[Sample, Sample]) -> None:
    a, b = pair
    small = Sample("classification", a.y_true[:20], a.y_pred[:20], classes=a.classes)
    result = compare_versions(small, b, CompareOptions(min_samples=100))
    acc = result.differences["accuracy"]
    assert acc.verdict == "not enough data" and "min_samples=100" in (acc.reason or "")
    assert "log_loss" not in result.differences  # one side without probabilities
    assert result.verdict == "not enough data"
    out = result.to_dict()
    assert set(out) == {"baseline", "candidate", "task", "verdict", "kpis", "prediction_drift",
                        "counts", "method"}  # fmt: skip
    assert out["prediction_drift"]["method"] in ("chisquare", "js")


def test_gate_splits_alpha_and_rejects_unknown_kpis(pair: tuple[Sample, Sample]) -> None:
    a, b = pair
    result = compare_versions(a, b, CompareOptions(gate=["accuracy", "brier"]))
    assert result.differences["accuracy"].alpha == pytest.approx(0.025)
    assert result.differences["error_ratio"].alpha == pytest.approx(0.05)
    assert not result.differences["error_ratio"].gated
    with pytest.raises(ValueError, match="cannot gate on mae"):
        compare_versions(a, b, CompareOptions(gate=["mae"]))


def test_encode_classes_is_joint() -> None:
    (a, b), classes = encode_classes(["x", 1, "y"], [2, "x"])
    assert classes == (1, 2, "x", "y") and a.tolist() == [2, 0, 3] and b.tolist() == [1, 2]


def test_missing_latencies_are_left_out(pair: tuple[Sample, Sample]) -> None:
    a, b = pair
    assert b.latency_ms is not None
    holes = b.latency_ms.copy()
    holes[::10] = np.nan  # events without a latency
    with_holes = Sample(b.task, b.y_true, b.y_pred, b.proba, b.classes, holes, b.n_events)
    kept = Sample(b.task, b.y_true, b.y_pred, b.proba, b.classes, holes[np.isfinite(holes)])
    got = compare_versions(a, with_holes).differences
    want = compare_versions(a, kept).differences
    for kpi in ("latency_p50", "latency_p99"):
        assert got[kpi].difference is not None
        assert got[kpi].difference == pytest.approx(want[kpi].difference)
        assert (got[kpi].lower, got[kpi].upper) == (want[kpi].lower, want[kpi].upper)
        assert got[kpi].n_candidate == int(np.isfinite(holes).sum())


def test_a_margin_of_an_unknown_kpi_is_an_error() -> None:
    with pytest.raises(ValueError, match="margin of acuracy: no such KPI"):
        CompareOptions(margins={"acuracy": 0.01})
    CompareOptions(margins={"latency_p99": 5, "error_ratio": 0.01, "log_loss": 0.02})


def test_an_empty_gate_is_an_error_and_the_settings_know_every_kpi() -> None:
    from mlwatch.settings.compare import COMPARE_KPIS
    from mlwatch.stats.canary import ERROR_RATIO, LATENCY_QUANTILES, MEAN_KPIS

    with pytest.raises(ValueError, match="at least one KPI"):
        CompareOptions(gate=[])
    assert (*MEAN_KPIS, ERROR_RATIO, *LATENCY_QUANTILES) == COMPARE_KPIS
