"""Profiles against raw data: exact on the same bins, bounded for KS and Wasserstein; merging."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlwatch.stats import DatasetProfile, battery, compare, compare_profiles
from mlwatch.stats.profile import CategoricalProfile, NumericProfile, Reservoir

KINDS = ("normal", "lognormal", "uniform", "bimodal", "ints")


def gen(rng: np.random.Generator, kind: str, n: int, shift: float = 0.0) -> np.ndarray:
    if kind == "normal":
        return rng.normal(shift, 1, n)
    if kind == "lognormal":
        return rng.lognormal(shift, 1, n)
    if kind == "uniform":
        return rng.uniform(shift, 1 + shift, n)
    if kind == "bimodal":
        return np.where(rng.random(n) < 0.5, rng.normal(-2 + shift, 1, n), rng.normal(2, 0.5, n))
    if kind == "ints":
        return rng.poisson(3 + shift, n).astype(float)
    raise AssertionError(kind)


def cats(rng: np.random.Generator, n: int, k: int, shift: float = 0.0) -> np.ndarray:
    p = np.arange(1, k + 1, dtype=float) ** (1 + shift)
    return np.array([f"c{i}" for i in range(k)], dtype=object)[rng.choice(k, n, p=p / p.sum())]


@pytest.fixture(scope="module")
def data() -> tuple[dict, dict, DatasetProfile, DatasetProfile]:
    rng = np.random.default_rng(42)
    ref = {k: gen(rng, k, 60_000) for k in KINDS}
    cur = {k: gen(rng, k, 25_000, shift=0.05) for k in KINDS}
    ref["cat"], cur["cat"] = cats(rng, 60_000, 12), cats(rng, 25_000, 12, 0.1)
    cur["cat"][:40] = "new-1"
    cur["cat"][40:45] = "new-2"
    ref["cat"][:7] = None
    ref_p = DatasetProfile.from_reference(ref, seed=1)
    cur_p = ref_p.new_window(seed=2)
    for start in range(0, 25_000, 700):  # in batches, as the sidecar feeds it
        cur_p.update({k: v[start : start + 700] for k, v in cur.items()})
    return ref, cur, ref_p, cur_p


@pytest.mark.parametrize("method", ["psi", "js", "hellinger", "kl", "tvd", "chisquare"])
def test_binned_statistics_are_exact(data: tuple, method: str) -> None:
    ref, cur, ref_p, cur_p = data
    raw = compare(ref, cur, method=method)
    prof = compare_profiles(ref_p, cur_p, method=method)
    assert [f.method for f in raw.features] == [f.method for f in prof.features]
    for r, p in zip(raw.features, prof.features, strict=True):
        if r.method != method:
            continue  # chisquare applies to the categorical feature only
        assert p.score == r.score, (r.name, p.score, r.score)  # same counts: same float
        assert p.p_value == r.p_value
        assert p.unseen_categories == r.unseen_categories
        assert p.reference_quality == r.reference_quality
        assert p.current_quality == r.current_quality
    assert prof["cat"].unseen_categories == ("new-1", "new-2")


def test_ks_from_profiles_within_its_bound(data: tuple) -> None:
    ref, cur, ref_p, cur_p = data
    raw = compare(ref, cur, method="ks")
    prof = compare_profiles(ref_p, cur_p, method="ks")
    for kind in KINDS:
        r, p = raw[kind], prof[kind]
        lo, hi = p.details["bounds"]
        assert lo <= r.score <= hi, kind
        assert "approximate" in p.flags
        if kind != "ints":  # continuous: 1,000 quantile bins, the bound is one bin's mass
            assert hi - lo <= 1.5e-3, kind
            assert abs(p.score - r.score) <= 5e-4, kind
        else:  # discrete data on their own values: exact, though the bound cannot know it
            assert p.score == r.score


def test_wasserstein_from_profiles_within_its_bound(data: tuple) -> None:
    ref, cur, ref_p, cur_p = data
    raw = compare(ref, cur, method="wasserstein")
    prof = compare_profiles(ref_p, cur_p, method="wasserstein")
    for kind in KINDS:
        r, p = raw[kind], prof[kind]
        assert abs(p.score - r.score) <= p.details["bound"], kind
        assert abs(p.score - r.score) <= 2e-3, kind  # in reference standard deviations


@pytest.mark.parametrize("kind", KINDS)
def test_bounds_hold_on_a_coarse_grid(kind: str) -> None:
    """With 20 fine bins the estimates are poor, and the bounds must still contain the truth."""
    rng = np.random.default_rng(7)
    ref, cur = {"x": gen(rng, kind, 3000)}, {"x": gen(rng, kind, 2500, shift=0.3)}
    ref_p = DatasetProfile.from_reference(ref, bins=20, reservoir=0)
    cur_p = ref_p.new_window()
    cur_p.update(cur)
    ks_raw, ks_p = (
        compare(ref, cur, method="ks")["x"],
        compare_profiles(ref_p, cur_p, method="ks")["x"],
    )
    lo, hi = ks_p.details["bounds"]
    assert lo <= ks_raw.score <= hi
    w_raw = compare(ref, cur, method="wasserstein")["x"]
    w_p = compare_profiles(ref_p, cur_p, method="wasserstein")["x"]
    assert abs(w_p.score - w_raw.score) <= w_p.details["bound"]


def test_complete_reservoirs_give_exact_results() -> None:
    rng = np.random.default_rng(3)
    ref, cur = {"x": rng.normal(size=1500)}, {"x": rng.normal(0.1, 1, size=800)}
    ref_p = DatasetProfile.from_reference(ref, reservoir=2000, seed=1)
    cur_p = ref_p.new_window(seed=2)
    cur_p.update(cur)
    for method in ("ks", "wasserstein", "anderson", "cvm"):
        raw, prof = (
            compare(ref, cur, method=method)["x"],
            compare_profiles(ref_p, cur_p, method=method)["x"],
        )
        assert prof.score == pytest.approx(raw.score, rel=1e-12), method
        assert prof.p_value == (
            None if raw.p_value is None else pytest.approx(raw.p_value, rel=1e-12)
        )
        assert "approximate" not in prof.flags and "sampled" not in prof.flags


def test_sample_tests_run_on_reservoirs(data: tuple) -> None:
    _, _, ref_p, cur_p = data
    report = compare_profiles(ref_p, cur_p, method="anderson")
    f = report["normal"]
    assert "sampled" in f.flags and f.details["sample_sizes"] == [2000, 2000]


# --- merging -------------------------------------------------------------------------------


def test_merging_windows_equals_profiling_the_concatenation() -> None:
    rng = np.random.default_rng(5)
    ref = {"x": rng.normal(size=20_000), "c": cats(rng, 20_000, 8)}
    ref_p = DatasetProfile.from_reference(ref, top_k=6, seed=0)
    chunks = [
        {
            "x": np.r_[rng.normal(size=n), [np.nan, np.inf]],
            "c": np.r_[cats(rng, n, 10), [None, "zz"]],
        }
        for n in (3000, 1, 4500)
    ]
    windows = []
    for i, chunk in enumerate(chunks):
        w = ref_p.new_window(seed=10 + i)
        w.update(chunk)
        windows.append(w)
    merged = windows[0].merge(windows[1]).merge(windows[2])
    whole = ref_p.new_window(seed=99)
    whole.update({k: np.concatenate([c[k] for c in chunks]) for k in ("x", "c")})
    assert merged.rows == whole.rows
    mx, wx = merged.columns["x"], whole.columns["x"]
    assert isinstance(mx, NumericProfile) and isinstance(wx, NumericProfile)
    assert mx.counts.tolist() == wx.counts.tolist()
    assert mx.quality == wx.quality
    assert (mx.n, mx.min, mx.max) == (wx.n, wx.min, wx.max)
    assert mx.mean == pytest.approx(wx.mean, rel=1e-12)
    assert mx.m2 == pytest.approx(wx.m2, rel=1e-12)
    mc, wc = merged.columns["c"], whole.columns["c"]
    assert isinstance(mc, CategoricalProfile) and isinstance(wc, CategoricalProfile)
    assert mc.counts.tolist() == wc.counts.tolist()
    assert mc.extra == wc.extra and mc.extra_other == wc.extra_other and mc.quality == wc.quality
    # the reference kept its top 6 (c2..c7); its tail (c0, c1) and the new values are extras
    assert set(mc.extra) == {"c0", "c1", "c8", "c9", "zz"} and mc.extra["zz"] == 3
    for method in ("psi", "js", "chisquare"):
        assert (
            compare_profiles(ref_p, merged, method=method).to_dict()
            == compare_profiles(ref_p, whole, method=method).to_dict()
        )


def test_merged_reservoir_is_the_bottom_k_of_all_keys() -> None:
    """Same keys, any split into windows: the same reservoir as one pass over everything."""
    rng = np.random.default_rng(8)
    values, keys = rng.normal(size=10_000), rng.random(10_000)
    edges = np.quantile(values, np.arange(1, 10) / 10)
    whole = NumericProfile(edges, {}, reservoir=500)
    whole.update(values, keys)
    parts = [NumericProfile(edges, {}, reservoir=500) for _ in range(4)]
    for i, idx in enumerate(np.array_split(np.arange(10_000), [100, 2500, 2600])):
        for chunk in np.array_split(idx, 7):  # many small batches: the lazy compaction path
            parts[i].update(values[chunk], keys[chunk])
    merged = parts[0].merge(parts[1]).merge(parts[2]).merge(parts[3])
    smallest = np.argsort(keys)[:500]
    assert merged.reservoir.values.tolist() == values[smallest].tolist()
    assert whole.reservoir.values.tolist() == values[smallest].tolist()
    assert merged.reservoir.seen == 10_000 and not merged.reservoir.complete


def test_reservoir_is_uniform() -> None:
    """Each value's chance of being kept is capacity / n (chi-square over many runs)."""
    rng = np.random.default_rng(9)
    hits = np.zeros(50)
    for _ in range(400):
        r = Reservoir(10)
        for chunk in np.array_split(np.arange(50.0), 6):
            r.add(chunk, rng.random(chunk.size))
        hits[r.values.astype(int)] += 1
    expected = 400 * 10 / 50
    stat = float(np.sum((hits - expected) ** 2 / expected))
    assert stat < 90  # chi-square with 49 dof: 99.9 % quantile is about 85


def test_joint_binning_equals_searchsorted() -> None:
    """The branchless all-columns search (small batches) and the sort path (big ones)."""
    rng = np.random.default_rng(10)
    ref = {f"x{i}": gen(rng, KINDS[i % 5], 5000) * (i + 1) for i in range(6)}
    ref_p = DatasetProfile.from_reference(ref)
    for rows in (1, 37, 1000, 1600, 7000):
        batch = {k: gen(rng, KINDS[i % 5], rows, 0.2) * (i + 1) for i, k in enumerate(ref)}
        w = ref_p.new_window()
        w.update(batch)
        for k, v in batch.items():
            prof = w.columns[k]
            assert isinstance(prof, NumericProfile)
            want = np.bincount(
                np.searchsorted(prof.edges, v, side="right"), minlength=prof.edges.size + 1
            )
            assert prof.counts.tolist() == want.tolist(), (rows, k)
            assert prof.mean == pytest.approx(v.mean()) and prof.min == v.min()


def test_update_counts_quality_and_absent_columns() -> None:
    ref_p = DatasetProfile.from_reference({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "b"]})
    w = ref_p.new_window()
    w.update({"x": [1.5, None, float("inf"), "oops", float("-inf"), 9.0]})  # "c" absent
    w.update_records([{"x": 2.0, "c": "a"}, None, {"c": "new"}, {"x": float("nan"), "c": None}])
    assert w.rows == 9
    assert w.columns["x"].quality.to_dict() == {
        "count": 9,
        "missing": 3,
        "posinf": 1,
        "neginf": 1,
        "invalid": 1,
        "used": 3,
    }
    assert w.columns["c"].quality.to_dict() == {
        "count": 9,
        "missing": 7,
        "posinf": 0,
        "neginf": 0,
        "invalid": 0,
        "used": 2,
    }
    report = compare_profiles(ref_p, w)
    assert report["c"].unseen_categories == ("new",)


def test_reference_with_more_categories_than_top_k() -> None:
    rng = np.random.default_rng(12)
    ref_p = DatasetProfile.from_reference({"c": cats(rng, 5000, 30)}, top_k=10)
    w = ref_p.new_window()
    w.update({"c": np.r_[cats(rng, 2000, 30), ["brand-new"] * 50]})
    f = compare_profiles(ref_p, w, method="chisquare")["c"]
    assert "reference_categories_truncated" in f.flags and f.unseen_categories == ()
    assert f.details["dof"] == 10  # ten named categories and one "other" column


# --- persistence ---------------------------------------------------------------------------


def test_json_round_trip(data: tuple) -> None:
    _, _, ref_p, cur_p = data
    text = cur_p.to_json()
    assert json.loads(text)["format"] == "mlwatch.profile" and json.loads(text)["version"] == 1
    again = DatasetProfile.from_json(text)
    assert again.to_json() == text
    ref_again = DatasetProfile.from_json(ref_p.to_json())
    assert (
        battery(ref_again, again, ["ks", "wasserstein", "psi", "js", "chisquare", "cvm"])[
            "ks"
        ].to_dict()
        == battery(ref_p, cur_p, ["ks"])["ks"].to_dict()
    )
    with pytest.raises(ValueError, match="version"):
        DatasetProfile.from_dict({**json.loads(text), "version": 99})


def test_merge_refuses_different_layouts() -> None:
    a = DatasetProfile.from_reference({"x": [1.0, 2.0, 3.0]})
    b = DatasetProfile.from_reference({"x": [5.0, 6.0, 7.0]})
    with pytest.raises(ValueError, match="edges"):
        a.new_window().merge(b.new_window())
    window = a.new_window()
    window.update({"x": [1.5, 2.5]})
    with pytest.raises(ValueError, match="psi_bins"):
        compare_profiles(a, window, bins=20, method="psi")
