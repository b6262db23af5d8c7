"""Every drift statistic against its SciPy definition, edge cases, and one contract for all.

The oracles are SciPy's own functions on the same finite values; where the definition is
the same the results must agree to 1e-9 (most are bit-identical).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial import distance

from mlwatch.stats import METHODS, compare, get_method
from mlwatch.stats import distances as dk
from mlwatch.stats import numeric as nk
from mlwatch.stats.pairs import CategoryTable, ExactPair

TOL = 1e-9


def pair(a: np.ndarray, b: np.ndarray) -> ExactPair:
    return ExactPair(np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float)))


def samples(
    seed: int, n1: int, n2: int, shift: float = 0.0, kind: str = "normal"
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(size=n1), rng.normal(shift, 1, size=n2)
    if kind == "lognormal":
        return rng.lognormal(size=n1), rng.lognormal(shift, 1, size=n2)
    if kind == "ties":  # heavy ties: rounded values
        return np.round(rng.normal(size=n1), 1), np.round(rng.normal(shift, 1, size=n2), 1)
    if kind == "ints":
        return rng.poisson(3, n1).astype(float), rng.poisson(3 + shift, n2).astype(float)
    raise AssertionError(kind)


FIXTURES = [
    (1, 40, 55, 0.0, "normal"),
    (2, 500, 500, 0.2, "normal"),
    (3, 3000, 12000, 0.05, "lognormal"),
    (4, 20000, 15000, 0.03, "normal"),
    (5, 800, 9000, 0.1, "ties"),
    (6, 12000, 12000, 0.2, "ints"),
    (7, 1, 1, 0.5, "normal"),
    (8, 2, 3, 0.5, "normal"),
    (9, 10001, 50, 1.0, "normal"),
]


@pytest.mark.parametrize(("seed", "n1", "n2", "shift", "kind"), FIXTURES)
def test_ks_equals_scipy_ks_2samp(seed: int, n1: int, n2: int, shift: float, kind: str) -> None:
    a, b = samples(seed, n1, n2, shift, kind)
    got = get_method("ks").compute(pair(a, b))
    want = sps.ks_2samp(a, b)  # method="auto": exact up to 10,000 per side, else asymptotic
    assert got.score == pytest.approx(float(want.statistic), abs=TOL)
    assert got.p_value == pytest.approx(float(want.pvalue), abs=TOL, rel=1e-9)
    assert got.details["mode"] == ("exact" if max(n1, n2) <= 10_000 else "asymp")


@pytest.mark.parametrize(
    ("n", "c"),
    [(60_000, 1.5), (60_000, 3.0), (250_000, 2.0), (999_999, 2.0), (1_500_000, 2.0), (20_000, 0.8)],
)
def test_kstwo_sf_fast_path_equals_scipy(n: int, c: float) -> None:
    """The vectorised Smirnov series (our fast path) against scipy.stats.kstwo.sf."""
    d = c / math.sqrt(n)
    want = float(sps.kstwo.sf(d, n))
    got = nk.kstwo_sf(d, n)
    assert got == pytest.approx(want, abs=TOL, rel=1e-8)


@pytest.mark.parametrize(("seed", "n1", "n2", "shift", "kind"), FIXTURES)
def test_wasserstein_equals_scipy(seed: int, n1: int, n2: int, shift: float, kind: str) -> None:
    a, b = samples(seed, n1, n2, shift, kind)
    p = pair(a, b)
    got = get_method("wasserstein").compute(p)
    raw = sps.wasserstein_distance(a, b)
    assert got.details["distance"] == pytest.approx(raw, rel=TOL, abs=1e-12)
    std = np.std(a)
    if std > 0:
        assert got.score == pytest.approx(raw / std, rel=TOL, abs=1e-12)
    # the merged-CDF integral (used by the battery) agrees with the paired-quantile shortcut
    merged = nk.wasserstein_from_merged(p.merged(), a.size, b.size)
    assert merged == pytest.approx(raw, rel=TOL, abs=1e-12)


@pytest.mark.parametrize(
    ("seed", "n1", "n2", "shift", "kind"), [f for f in FIXTURES if f[1] + f[2] >= 4]
)
def test_anderson_equals_scipy_midrank(
    seed: int, n1: int, n2: int, shift: float, kind: str
) -> None:
    a, b = samples(seed, n1, n2, shift, kind)
    got = get_method("anderson").compute(pair(a, b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy warns when the p-value is capped
        want = sps.anderson_ksamp([a, b], variant="midrank")
    assert got.score == pytest.approx(float(want.statistic), rel=TOL, abs=TOL)
    assert got.p_value == pytest.approx(float(want.pvalue), rel=TOL, abs=TOL)
    capped = got.details["p_value_capped"]
    assert (capped is not None) == (want.pvalue in (0.25, 0.001))


@pytest.mark.parametrize(
    ("seed", "n1", "n2", "shift", "kind"), [f for f in FIXTURES if min(f[1], f[2]) >= 2]
)
def test_cvm_equals_scipy(seed: int, n1: int, n2: int, shift: float, kind: str) -> None:
    a, b = samples(seed, n1, n2, shift, kind)
    got = get_method("cvm").compute(pair(a, b))
    want = sps.cramervonmises_2samp(a, b)
    assert got.score == pytest.approx(float(want.statistic), rel=TOL, abs=TOL)
    assert got.p_value == pytest.approx(float(want.pvalue), rel=TOL, abs=TOL)


def test_psi_by_hand_on_known_counts() -> None:
    ref, cur = np.array([500, 300, 200, 0]), np.array([400, 300, 250, 50])
    p, q = ref / 1000, cur / 1000
    p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)  # floor, then renormalise
    p, q = p / p.sum(), q / q.sum()
    want = sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))
    assert dk.psi(ref, cur) == pytest.approx(want, rel=1e-12)
    # written out: p = (0.5, 0.3, 0.2, 0.0001) / 1.0001 (the empty bin floored), q = cur / 1000
    p = [0.5 / 1.0001, 0.3 / 1.0001, 0.2 / 1.0001, 0.0001 / 1.0001]
    terms = [
        (0.4 - p[0]) * math.log(0.4 / p[0]),
        (0.3 - p[1]) * math.log(0.3 / p[1]),
        (0.25 - p[2]) * math.log(0.25 / p[2]),
        (0.05 - p[3]) * math.log(0.05 / p[3]),
    ]
    assert dk.psi(ref, cur) == pytest.approx(sum(terms), rel=1e-12)
    assert dk.psi(ref, cur) == pytest.approx(0.343574, abs=1e-6)
    assert dk.psi(ref, ref) == 0.0
    # bins empty on both sides do not change anything
    assert dk.psi(np.append(ref, 0), np.append(cur, 0)) == dk.psi(ref, cur)


def test_binned_distances_equal_scipy() -> None:
    rng = np.random.default_rng(11)
    ref, cur = rng.integers(0, 500, 12), rng.integers(0, 500, 12)
    cur[3] = 0
    p, q = ref / ref.sum(), cur / cur.sum()
    assert dk.js_distance(ref, cur) == pytest.approx(distance.jensenshannon(p, q, base=2), abs=TOL)
    assert dk.hellinger(ref, cur) == pytest.approx(
        distance.euclidean(np.sqrt(p), np.sqrt(q)) / math.sqrt(2), abs=TOL
    )
    assert dk.tvd(ref, cur) == pytest.approx(distance.cityblock(p, q) / 2, abs=TOL)
    ps, qs = dk.smoothed(p), dk.smoothed(q)
    assert dk.kl(ref, cur) == pytest.approx(sps.entropy(qs, ps), abs=TOL)


@pytest.mark.parametrize("bins", [10, 7, 20])
def test_numeric_binning_on_reference_quantiles(bins: int) -> None:
    a, b = samples(21, 5000, 4000, 0.3, "lognormal")
    edges = np.quantile(a, np.arange(1, bins) / bins)
    ref = np.bincount(np.searchsorted(edges, a, side="right"), minlength=bins)
    cur = np.bincount(np.searchsorted(edges, b, side="right"), minlength=bins)
    p = pair(a, b)
    r, c = p.binned(bins)
    assert r.tolist() == ref.tolist() and c.tolist() == cur.tolist()
    assert get_method("psi").compute(p, bins=bins).score == pytest.approx(dk.psi(ref, cur), abs=0)
    js = distance.jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2)
    assert get_method("js").compute(p, bins=bins).score == pytest.approx(js, abs=TOL)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chisquare_is_the_two_sample_contingency_test(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = dict(zip("abcdef", rng.integers(0, 300, 6).tolist(), strict=True))
    cur = dict(zip("abcdeg", rng.integers(0, 300, 6).tolist(), strict=True))  # g unseen, f gone
    table = CategoryTable.from_counts(ref, cur)
    got = get_method("chisquare").compute(table)
    observed = np.vstack([table.ref, table.cur])
    observed = observed[:, observed.sum(axis=0) > 0]
    want = sps.chi2_contingency(observed, correction=False)
    assert got.score == pytest.approx(float(want.statistic), rel=TOL)
    assert got.p_value == pytest.approx(float(want.pvalue), rel=TOL, abs=TOL)
    assert got.details["dof"] == want.dof
    assert table.unseen == ("g",)
    assert 0 < got.p_value <= 1  # an unseen category is a column, not an automatic p = 0


def test_chisquare_two_by_two_has_no_yates_correction() -> None:
    table = CategoryTable.from_counts({"a": 30, "b": 10}, {"a": 20, "b": 20})
    got = get_method("chisquare").compute(table)
    observed = np.array([[30, 10], [20, 20]])
    assert got.p_value == pytest.approx(
        float(sps.chi2_contingency(observed, correction=False).pvalue), rel=TOL
    )
    assert got.p_value != pytest.approx(float(sps.chi2_contingency(observed).pvalue), rel=1e-3)


def test_chisquare_is_not_goodness_of_fit() -> None:
    """Evidently's test treats reference counts as exact; the homogeneity test does not."""
    ref, cur = {"a": 520, "b": 480}, {"a": 480, "b": 520}
    got = get_method("chisquare").compute(CategoryTable.from_counts(ref, cur))
    gof = sps.chisquare([480, 520], f_exp=[520, 480])
    assert got.p_value > gof.pvalue * 2


# --- edge cases ---------------------------------------------------------------------------


def test_single_category_and_identical_constant_columns() -> None:
    table = CategoryTable.from_counts({"a": 10}, {"a": 3})
    for name in ("chisquare", "psi", "js", "hellinger", "kl", "tvd"):
        s = get_method(name).compute(table)
        assert s.score == 0.0, name
    assert get_method("chisquare").compute(table).p_value == 1.0
    same = pair(np.full(50, 2.0), np.full(30, 2.0))
    assert get_method("ks").compute(same).score == 0.0
    assert get_method("ks").compute(same).p_value == 1.0
    w = get_method("wasserstein").compute(same)
    assert w.score == 0.0 and w.flags == ("constant_reference",)
    assert get_method("anderson").compute(same).flags == ("too_few_values",)  # 1 distinct value


def test_constant_reference_against_other_values() -> None:
    p = pair(np.full(50, 2.0), np.array([2.0, 3.0, 4.0]))
    w = get_method("wasserstein").compute(p)
    assert w.score == math.inf and w.details["distance"] == pytest.approx(
        sps.wasserstein_distance(np.full(50, 2.0), [2.0, 3.0, 4.0])
    )
    report = compare({"x": np.full(5000, 2.0)}, {"x": np.full(5000, 3.0)})
    f = report["x"]
    assert f.method == "wasserstein" and f.drifted and f.score == math.inf
    assert f.to_dict()["score"] is None and "constant_reference" in f.flags


def test_tiny_samples() -> None:
    one = pair(np.array([1.0]), np.array([2.0]))
    ks = get_method("ks").compute(one)
    want = sps.ks_2samp([1.0], [2.0])
    assert (ks.score, ks.p_value) == (float(want.statistic), float(want.pvalue))
    assert get_method("cvm").compute(one).flags == ("too_few_values",)
    assert get_method("anderson").compute(one).flags == ("too_few_values",)
    assert get_method("psi").compute(one).score is not None


def test_all_nan_and_infinite_columns_do_not_crash() -> None:
    rng = np.random.default_rng(0)
    ref = {"x": rng.normal(size=300), "c": ["a", "b"] * 150}
    cur = {"x": np.full(200, np.nan), "c": [None] * 200}
    for name in METHODS:
        report = compare(ref, cur, method=name)
        for f in report.features:
            # no score to give; a feature that stopped carrying values is drift all the same
            assert f.score is None and f.p_value is None and f.drifted
            assert "no_current_data" in f.flags
    empty = compare(ref, {"x": np.array([]), "c": []})  # no rows at all: nothing to say
    assert not any(f.drifted for f in empty.features)
    inf_cur = {"x": np.r_[rng.normal(size=100), [np.inf, -np.inf, np.nan]], "c": ["a"] * 103}
    report = compare(ref, inf_cur, method="ks")
    q = report["x"].current_quality
    assert (q.count, q.missing, q.posinf, q.neginf, q.used) == (103, 1, 1, 1, 100)
    finite = inf_cur["x"][np.isfinite(inf_cur["x"])]
    assert report["x"].p_value == pytest.approx(sps.ks_2samp(ref["x"], finite).pvalue, abs=TOL)


# --- the contract every registered statistic follows --------------------------------------

CONTRACT_NUMERIC = {  # "same" is large: at a few hundred values distances alarm on noise
    "same": samples(31, 20000, 15000),
    "shifted": samples(32, 400, 300, shift=3.0),
    "constant": (np.full(40, 1.0), np.full(40, 1.0)),
    "tiny": (np.array([0.5]), np.array([0.7, 0.1])),
    "ties": samples(33, 200, 250, 0.0, "ints"),
}
CONTRACT_CATEGORICAL = {
    "same": ({"a": 10000, "b": 5000}, {"a": 9950, "b": 5050}),
    "shifted": ({"a": 100, "b": 50}, {"a": 10, "b": 140, "z": 30}),
    "single": ({"a": 5}, {"a": 5}),
    "tiny": ({"a": 1}, {"b": 1}),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_contract(name: str) -> None:
    method = METHODS[name]
    assert method.kind in ("test", "distance")
    assert method.default_threshold > 0 and method.description
    assert method.info()["name"] == name
    cases: list[tuple[str, ExactPair | CategoryTable]] = []
    if "numeric" in method.types:
        cases += [(k, pair(a, b)) for k, (a, b) in CONTRACT_NUMERIC.items()]
    if "categorical" in method.types:
        cases += [
            (k, CategoryTable.from_counts(r, c)) for k, (r, c) in CONTRACT_CATEGORICAL.items()
        ]
    for case, data in cases:
        s = method.compute(data)
        if s.score is not None:
            assert isinstance(s.score, float) and not math.isnan(s.score), case
            assert s.score >= 0 or method.name == "anderson", case
        if method.kind == "test" and s.score is not None:
            assert s.p_value is not None and 0.0 <= s.p_value <= 1.0, case
            assert isinstance(s.p_value, float)  # float64, never float32
        if method.kind == "distance":
            assert s.p_value is None
        threshold = method.default_threshold
        if case == "shifted":
            assert method.is_drifted(s, threshold), f"{name} misses an obvious shift"
        if case == "same":
            assert not method.is_drifted(s, threshold), f"{name} alarms on no drift"
