"""The dataset-level report: its JSON contract, method choice, correction, minimum effect."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import mlwatch.stats as st
from mlwatch.errors import ConfigError
from mlwatch.stats import auto_method, battery, compare, prepare
from mlwatch.stats.columns import infer_type

REQUIRED_FEATURE_KEYS = {"name", "type", "method", "score", "p_value", "threshold", "drifted"}


def frames(n: int = 3000, shift: float = 0.0, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def one(s: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "age": rng.normal(40 + 10 * s, 10, n),
                "income": rng.lognormal(10 + s, 1, n),
                "clicks": rng.poisson(3, n),
                "plan": rng.choice(
                    ["free", "pro", "team"], n, p=[0.6, 0.3, 0.1] if not s else [0.4, 0.4, 0.2]
                ),
                "active": rng.random(n) < 0.5,
            }
        )

    return one(0.0), one(shift)


def test_to_dict_is_the_drift_json_contract() -> None:
    ref, cur = frames(shift=0.5)
    report = compare(ref, cur)
    d = report.to_dict()
    text = json.dumps(d, allow_nan=False)  # plain JSON: no NaN, no Infinity
    assert json.loads(text) == d
    assert {"features", "drift_share", "dataset_drift"} <= d.keys()
    assert [f["name"] for f in d["features"]] == list(ref.columns)
    for f in d["features"]:
        assert f.keys() >= REQUIRED_FEATURE_KEYS
        assert f["type"] in ("numeric", "categorical")
        assert isinstance(f["drifted"], bool) and isinstance(f["threshold"], float)
        assert f["quality"]["current"]["count"] == 3000
    assert d["drift_share"] == sum(f["drifted"] for f in d["features"]) / 5
    assert d["dataset_drift"] == (d["drift_share"] >= 0.5)


def test_type_inference() -> None:
    ref, _ = frames()
    types = {f.name: f.type for f in compare(ref, ref).features}
    assert types == {
        "age": "numeric",
        "income": "numeric",
        "clicks": "numeric",
        "plan": "categorical",
        "active": "categorical",
    }
    assert infer_type(pd.Series([1, None, 3], dtype="Int64")) == "numeric"
    assert infer_type(pd.Series(["a", "b"], dtype="category")) == "categorical"
    assert infer_type([1.5, None, 2]) == "numeric"
    assert infer_type([1.5, "x"]) == "categorical"
    assert infer_type(np.array([1, 2], dtype=np.uint8)) == "numeric"
    forced = compare(ref, ref, types={"clicks": "categorical"})
    assert forced["clicks"].type == "categorical" and forced["clicks"].method == "js"


def test_auto_selection_rule() -> None:
    # numeric: KS up to an effective size of 1,000, Wasserstein beyond
    assert auto_method("numeric", 2000, 2000) == "ks"  # n_eff = 1000
    assert auto_method("numeric", 2002, 2002) == "wasserstein"
    assert auto_method("numeric", 1_000_000, 1000) == "ks"  # n_eff ~ 999: the small side rules
    # categorical: chi-square while its 5 % critical value is a JS distance >= 0.1
    for k in (2, 5, 50):
        crit = sps.chi2.isf(0.05, k - 1)
        switch = crit / (8 * math.log(2) * 0.01)
        below, above = int(2 * switch) - 2, int(2 * switch) + 4
        assert auto_method("categorical", below, below, k) == "chisquare", k
        assert auto_method("categorical", above, above, k) == "js", k
    small, large = frames(n=200), frames(n=20_000)
    assert compare(*small)["age"].method == "ks"
    assert compare(*small)["plan"].method == "chisquare"  # 3 categories: switch at n_eff ~ 108
    assert compare(*large)["age"].method == "wasserstein"
    assert compare(*large)["plan"].method == "js"


def test_forced_method_applies_where_it_can() -> None:
    ref, cur = frames(shift=0.3)
    psi = compare(ref, cur, method="psi")
    assert {f.method for f in psi.features} == {"psi"}
    ks = compare(ref, cur, method="ks")
    assert [f.method for f in ks.features] == ["ks", "ks", "ks", "js", "js"]  # auto for the rest
    mixed = compare(ref, cur, method={"age": "cvm", "plan": "tvd"})
    assert mixed["age"].method == "cvm" and mixed["plan"].method == "tvd"
    assert mixed["income"].method == "wasserstein"  # auto at n_eff = 1,500
    with pytest.raises(ConfigError, match="unknown drift method 'nope'"):
        compare(ref, cur, method="nope")
    with pytest.raises(ConfigError, match="correction"):
        compare(ref, cur, correction="holm")


def test_thresholds() -> None:
    ref, cur = frames(shift=0.05)
    base = compare(ref, cur, method="psi")
    strict = compare(ref, cur, method="psi", thresholds={"psi": 0.0})
    assert all(f.threshold == 0.2 for f in base.features)
    assert all(f.drifted for f in strict.features)
    assert compare(ref, cur, method="ks", alpha=0.01)["age"].threshold == 0.01


def test_bonferroni_and_benjamini_hochberg() -> None:
    rng = np.random.default_rng(1)
    shifts = [0.0, 0.0, 0.0, 0.04, 0.06, 0.08, 0.12, 0.0, 0.05, 0.02]
    ref = {f"f{i}": rng.normal(size=900) for i in range(10)}
    cur = {f"f{i}": rng.normal(s, 1, size=900) for i, s in enumerate(shifts)}
    plain = compare(ref, cur, method="ks")
    p = np.array([f.p_value for f in plain.features])
    bonf = compare(ref, cur, method="ks", correction="bonferroni")
    assert [f.drifted for f in bonf.features] == list(p < 0.05 / 10)
    assert bonf.corrected_threshold == pytest.approx(0.005)
    bh = compare(ref, cur, method="ks", correction="bh")
    adjusted = sps.false_discovery_control(p, method="bh")
    assert [f.drifted for f in bh.features] == list(adjusted <= 0.05)
    assert sum(f.drifted for f in bh.features) >= sum(f.drifted for f in bonf.features)
    assert all(f.threshold == bh.corrected_threshold for f in bh.features)


def test_min_effect_silences_negligible_shifts_on_huge_samples() -> None:
    rng = np.random.default_rng(2)
    ref, cur = {"x": rng.normal(size=400_000)}, {"x": rng.normal(0.02, 1, size=400_000)}
    ks = compare(ref, cur, method="ks")["x"]
    assert ks.drifted and ks.p_value < 1e-6  # a 0.02 sigma shift is "significant" here
    tempered = compare(ref, cur, method="ks", min_effect=0.1)["x"]
    assert not tempered.drifted and tempered.effect == pytest.approx(0.02, abs=0.005)
    assert compare(ref, cur)["x"].method == "wasserstein" and not compare(ref, cur)["x"].drifted
    big = {"x": rng.normal(0.3, 1, size=400_000)}
    assert compare(ref, big, method="ks", min_effect=0.1)["x"].drifted


def test_dataset_drift_share() -> None:
    ref, cur = frames(shift=0.5)
    report = compare(ref, cur, drift_share=0.9)
    assert report.drift_share_threshold == 0.9
    assert report.dataset_drift == (report.drift_share >= 0.9)
    assert report.n_drifted == len(report.drifted_features)


def test_data_quality_and_absent_columns() -> None:
    ref = {
        "x": np.r_[np.arange(100.0), [np.nan]],
        "c": ["a", "b"] * 50 + [None],
        "gone": [1.0] * 101,
    }
    cur = {
        "x": [1.0, None, float("inf"), float("-inf"), "bad", 3.0],
        "c": ["a", "z", "z", None, "b", "a"],
    }
    report = compare(ref, cur)
    x, c, gone = report["x"], report["c"], report["gone"]
    assert x.current_quality.to_dict() == {
        "count": 6,
        "missing": 1,
        "posinf": 1,
        "neginf": 1,
        "invalid": 1,
        "used": 2,
    }
    assert x.reference_quality.missing == 1
    assert c.unseen_categories == ("z",) and c.unseen_count == 2 and "unseen_categories" in c.flags
    assert c.to_dict()["unseen_categories"] == ["z"]
    assert gone.score is None and not gone.drifted and "missing_in_current" in gone.flags
    assert report.n_evaluated == 2


def test_inputs_dicts_lists_prepared_and_threads_agree() -> None:
    ref, cur = frames(shift=0.2, n=5000)
    want = compare(ref, cur, workers=1).to_dict()
    as_dicts = compare({k: ref[k].to_numpy() for k in ref}, {k: cur[k].tolist() for k in cur})
    assert as_dicts.to_dict() == want
    assert compare(ref, cur, workers=4).to_dict() == want
    prepared = prepare(ref)
    assert compare(prepared, cur).to_dict() == want
    assert compare(prepared, prepare(cur)).to_dict() == want
    assert compare(prepared, cur).to_dict() == want  # the reference's caches are reusable


def test_battery_equals_separate_comparisons() -> None:
    ref, cur = frames(shift=0.1, n=4000)
    reports = battery(ref, cur)
    assert set(reports) == {"ks", "wasserstein", "psi", "js", "chisquare"}
    assert [f.name for f in reports["chisquare"].features] == ["plan", "active"]
    for name, report in reports.items():
        single = compare(ref, cur, method=name)
        for f in report.features:
            assert single[f.name].to_dict() == f.to_dict()


def test_public_names() -> None:
    for name in st.__all__:
        assert getattr(st, name) is not None
    assert set(st.__all__) <= set(dir(st))


def test_reference_profile_against_raw_current() -> None:
    ref, cur = frames(shift=0.2, n=5000)
    ref_p = st.DatasetProfile.from_reference(ref, seed=1)
    window = ref_p.new_window()
    window.update(cur)
    want = st.compare_profiles(ref_p, window, method="psi").to_dict()
    assert compare(ref_p, cur, method="psi").to_dict() == want
    with pytest.raises(ConfigError, match="reference profile"):
        compare(ref, window)
