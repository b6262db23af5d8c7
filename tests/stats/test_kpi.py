"""KPIs: every metric against scikit-learn, intervals, row handling, windows on the real store."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from mlwatch.stats import kpi
from mlwatch.store import EmbeddedStore, event_row, feedback_row
from mlwatch.wire import validate_event, validate_feedback

TOL = 1e-9


# -- fixtures ------------------------------------------------------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def binary_fixture(n: int = 800, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Labels and positive-class scores; scores rounded to 2 decimals so that many tie."""
    rng = np.random.default_rng(seed)
    truth = rng.beta(2, 2, n)
    y = (rng.random(n) < truth).astype(np.int64)
    score = np.round(np.clip(truth + rng.normal(0, 0.15, n), 0, 1), 2)
    return y, score


def multiclass_fixture(n: int = 900, k: int = 4, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from a true distribution, probabilities of an imperfect model.

    Logits rounded to one decimal give repeated probability values (ties in ROC AUC).
    """
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 1.5, (n, k))
    y = np.array([rng.choice(k, p=p) for p in softmax(true_logits)])
    proba = softmax(np.round(true_logits * 0.8 + rng.normal(0, 0.5, (n, k)), 1))
    return y, proba


def regression_fixture(n: int = 700, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(50, 10, n)
    return y, y + rng.normal(1, 4, n)


def rows_of(preds: list[Any], labels: list[Any], **event: Any) -> list[tuple[dict[str, Any], Any]]:
    """Rows shaped as EmbeddedStore.joined() yields them: (event, label or None)."""
    return [
        (
            {
                "event_id": f"e{i}",
                "ts_us": 1_767_225_600_000_000 + i,
                "status": "ok",
                "prediction": p,
                **event,
            },
            y,
        )
        for i, (p, y) in enumerate(zip(preds, labels, strict=True))
    ]


# -- metrics against scikit-learn ------------------------------------------------------


@pytest.mark.parametrize("labels", ["ints", "strings"])
def test_accuracy_precision_recall_f1_match_sklearn(labels: str) -> None:
    y, proba = multiclass_fixture()
    pred = proba.argmax(axis=1)
    pred[:40] = 3  # a class over-predicted; keeps every zero-division branch honest
    if labels == "strings":
        names = np.array(["ant", "bee", "cat", "dog"])
        y, pred = names[y], names[pred]
    assert abs(kpi.accuracy(y, pred) - skm.accuracy_score(y, pred)) < TOL
    for average in ("macro", "weighted"):
        ours = kpi.precision_recall_f1(y, pred, average)
        theirs = skm.precision_recall_fscore_support(y, pred, average=average, zero_division=0)
        assert np.allclose(ours, theirs[:3], rtol=0, atol=TOL), average


def test_precision_recall_zero_division_is_zero_like_sklearn() -> None:
    # class 2 never predicted (precision 0/0), class 3 predicted but never true (recall 0/0)
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    pred = np.array([0, 1, 1, 3, 0, 1, 0, 3])
    for average in ("macro", "weighted"):
        theirs = skm.precision_recall_fscore_support(y, pred, average=average, zero_division=0)
        assert np.allclose(kpi.precision_recall_f1(y, pred, average), theirs[:3], atol=TOL)
    with pytest.raises(ValueError, match="average"):
        kpi.precision_recall_f1(y, pred, "micro")


def test_binary_probability_metrics_match_sklearn() -> None:
    y, score = binary_fixture()
    assert len(np.unique(score)) < len(score) / 2  # many ties
    assert abs(kpi.roc_auc(y, score) - skm.roc_auc_score(y, score)) < TOL
    assert abs(kpi.log_loss(y, score) - skm.log_loss(y, score, labels=[0, 1])) < TOL
    assert abs(kpi.brier_score(y, score) - skm.brier_score_loss(y, score)) < TOL
    matrix = np.column_stack([1 - score, score])  # the (n, 2) form gives the same
    assert abs(kpi.brier_score(y, matrix) - skm.brier_score_loss(y, score)) < TOL
    assert abs(kpi.log_loss(y, matrix) - skm.log_loss(y, matrix)) < TOL
    # confident mistakes: scores of exactly 0 and 1 hit the clipping
    y2, s2 = np.array([0, 1, 1, 0]), np.array([1.0, 0.0, 1.0, 0.0])
    assert abs(kpi.log_loss(y2, s2) - skm.log_loss(y2, s2)) < TOL
    assert abs(kpi.log_loss(y2, s2) + math.log(kpi.LOG_LOSS_EPS) / 2) < 1e-6


def test_multiclass_probability_metrics_match_sklearn() -> None:
    y, proba = multiclass_fixture()
    labels = list(range(proba.shape[1]))
    expected_auc = skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels)
    assert abs(kpi.roc_auc(y, proba) - expected_auc) < TOL
    assert abs(kpi.log_loss(y, proba) - skm.log_loss(y, proba, labels=labels)) < TOL
    # three classes or more: Brier's sum over classes, in [0, 2] (sklearn's "auto")
    assert abs(kpi.brier_score(y, proba) - skm.brier_score_loss(y, proba, labels=labels)) < TOL


def test_multiclass_auc_skips_a_class_missing_from_the_labels() -> None:
    y, proba = multiclass_fixture()
    keep = y != 2
    ours = kpi.roc_auc(y[keep], proba[keep])
    expected = np.mean([skm.roc_auc_score(y[keep] == c, proba[keep][:, c]) for c in (0, 1, 3)])
    assert abs(ours - expected) < TOL
    assert math.isnan(kpi.roc_auc([1, 1, 1], [[0.2, 0.8], [0.1, 0.9], [0.5, 0.5]]))
    assert math.isnan(kpi.roc_auc([1, 1, 1], [0.2, 0.3, 0.4]))


def test_expected_calibration_error_hand_computed() -> None:
    proba = np.array(
        [
            [0.05, 0.90, 0.05],  # y=1: confidence 0.90, bin (0.8, 0.9], right
            [0.10, 0.85, 0.05],  # y=0: 0.85, bin (0.8, 0.9], wrong
            [0.60, 0.30, 0.10],  # y=0: 0.60, bin (0.5, 0.6], right (0.6 is the bin's upper edge)
            [0.40, 0.35, 0.25],  # y=2: 0.40, bin (0.3, 0.4], wrong
            [0.20, 0.70, 0.10],  # y=1: 0.70, bin (0.6, 0.7], right (upper edge)
            [0.20, 0.15, 0.65],  # y=1: 0.65, bin (0.6, 0.7], wrong
            [1.00, 0.00, 0.00],  # y=0: 1.00, bin (0.9, 1.0], right: no gap
        ]
    )
    y = np.array([1, 0, 0, 2, 1, 1, 0])
    # |right - confidence| summed per bin: (0.8,0.9]: |1 - 1.75| = 0.75; (0.5,0.6]: 0.4;
    # (0.3,0.4]: 0.4; (0.6,0.7]: |1 - 1.35| = 0.35; (0.9,1.0]: 0. Over 7 predictions.
    assert abs(kpi.expected_calibration_error(y, proba) - 1.9 / 7) < TOL
    # with [lo, hi) bins 0.70 would sit alone in (0.7, 0.8] and the result would differ
    assert (
        abs(
            kpi.expected_calibration_error(y, proba, n_bins=1)
            - abs(4 - proba.max(axis=1).sum()) / 7
        )
        < TOL
    )
    # binary scores: the top label of [1 - p, p]
    assert abs(kpi.expected_calibration_error([1, 0], [0.8, 0.3]) - 0.25) < TOL


def test_regression_metrics_match_sklearn() -> None:
    y, pred = regression_fixture()
    assert abs(kpi.mean_absolute_error(y, pred) - skm.mean_absolute_error(y, pred)) < TOL
    assert abs(kpi.root_mean_squared_error(y, pred) - skm.root_mean_squared_error(y, pred)) < TOL
    assert (
        abs(
            kpi.mean_absolute_percentage_error(y, pred)
            - skm.mean_absolute_percentage_error(y, pred)
        )
        < TOL
    )
    assert abs(kpi.r2_score(y, pred) - skm.r2_score(y, pred)) < TOL


def test_mape_with_zero_labels_uses_sklearns_epsilon() -> None:
    y, pred = np.array([1.0, 0.0, 2.4, 7.0]), np.array([1.2, 0.1, 2.4, 8.0])
    ours = kpi.mean_absolute_percentage_error(y, pred)
    assert ours == pytest.approx(skm.mean_absolute_percentage_error(y, pred), rel=1e-12)
    assert 1e14 < ours < math.inf
    report = kpi.compute_kpis(
        rows_of(list(pred) * 5, list(y) * 5), task="regression", min_samples=10
    )
    mape = report.kpis["mape"]
    assert mape.value == pytest.approx(ours, rel=1e-12)
    assert mape.lower is not None and mape.upper is not None and math.isfinite(mape.upper)


def test_r2_of_constant_labels_is_undefined_not_a_crash() -> None:
    assert math.isnan(kpi.r2_score([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))
    report = kpi.compute_kpis(
        rows_of([1.0, 2.0, 3.0] * 10, [2.0] * 30), task="regression", min_samples=10
    )
    r2 = report.kpis["r2"]
    assert r2.value is None and r2.lower is None and r2.reason is not None
    assert "constant" in r2.reason
    assert report.kpis["mae"].value == pytest.approx(2 / 3)


# -- compute_kpis on joined rows -----------------------------------------------------


def test_compute_kpis_binary_matches_sklearn() -> None:
    y, score = binary_fixture()
    rows = rows_of([[1 - s, s] for s in score.tolist()], y.tolist())
    report = kpi.compute_kpis(rows)
    assert report.task == "classification" and report.n_used == report.n_proba == len(y)
    v = report.value
    argmax = np.column_stack([1 - score, score]).argmax(axis=1)  # a 0.5 tie goes to class 0
    assert abs(v("accuracy") - skm.accuracy_score(y, argmax)) < TOL
    p, r, f, _ = skm.precision_recall_fscore_support(y, argmax, average="macro", zero_division=0)
    assert abs(v("precision_macro") - p) < TOL and abs(v("recall_macro") - r) < TOL
    assert abs(v("f1_macro") - f) < TOL
    assert abs(v("roc_auc") - skm.roc_auc_score(y, score)) < TOL
    assert abs(v("log_loss") - skm.log_loss(y, score)) < TOL
    assert abs(v("brier") - skm.brier_score_loss(y, score)) < TOL
    assert abs(v("ece") - kpi.expected_calibration_error(y, score)) < TOL
    for k in report.kpis.values():
        assert k.reason is None and k.lower is not None and k.upper is not None, k
        assert k.lower <= k.value <= k.upper, k
        assert k.method == ("wilson" if k.name == "accuracy" else "bootstrap")
    json.dumps(report.to_dict(), allow_nan=False)


def test_compute_kpis_multiclass_from_a_dict_prediction_with_string_classes() -> None:
    y, proba = multiclass_fixture()
    names = ["ant", "bee", "cat", "dog"]
    preds = [{"result": {"label": names[int(p.argmax())], "proba": p.tolist()}} for p in proba]
    report = kpi.compute_kpis(
        rows_of(preds, [{"truth": names[c]} for c in y]),
        prediction_field="result.label",
        label_field="truth",
        score_field="result.proba",
        classes=names,
    )
    y_str = np.array(names)[y]
    pred_str = np.array(names)[proba.argmax(axis=1)]
    assert abs(report.value("accuracy") - skm.accuracy_score(y_str, pred_str)) < TOL
    p, r, f, _ = skm.precision_recall_fscore_support(
        y_str, pred_str, average="weighted", zero_division=0
    )
    assert abs(report.value("precision_weighted") - p) < TOL
    assert abs(report.value("recall_weighted") - r) < TOL
    assert abs(report.value("f1_weighted") - f) < TOL
    assert (
        abs(
            report.value("roc_auc")
            - skm.roc_auc_score(y_str, proba, multi_class="ovr", labels=names)
        )
        < TOL
    )
    assert abs(report.value("log_loss") - skm.log_loss(y_str, proba, labels=names)) < TOL
    assert abs(report.value("brier") - skm.brier_score_loss(y_str, proba, labels=names)) < TOL


def test_prediction_shapes() -> None:
    y, score = binary_fixture(n=120)
    labels = y.tolist()
    base = kpi.compute_kpis(rows_of([[1 - s, s] for s in score.tolist()], labels), min_samples=100)
    # a scalar positive-class probability as the prediction itself: score_field=""
    scalar = kpi.compute_kpis(rows_of(score.tolist(), labels), score_field="", min_samples=100)
    assert scalar.kpis == base.kpis
    # the same scores at a path, the class label beside them
    argmax = [int(s > 0.5) for s in score]
    nested = kpi.compute_kpis(
        rows_of([{"y": a, "p": s} for a, s in zip(argmax, score.tolist(), strict=True)], labels),
        prediction_field="y",
        score_field="p",
        min_samples=100,
    )
    assert nested.kpis == base.kpis
    # labels only: the probability KPIs say why they are missing
    plain = kpi.compute_kpis(rows_of(argmax, labels), min_samples=100)
    assert plain.value("accuracy") == base.value("accuracy")
    assert plain.kpis["roc_auc"].value is None and plain.n_proba == 0
    assert "probabilities" in (plain.kpis["roc_auc"].reason or "")
    # booleans and integral floats are the classes 0/1
    as_bool = kpi.compute_kpis(
        rows_of([bool(a) for a in argmax], [float(t) for t in labels]), min_samples=100
    )
    assert as_bool.value("accuracy") == base.value("accuracy")
    assert as_bool.kpis["f1_macro"] == plain.kpis["f1_macro"]


def test_string_labels_with_vectors_need_classes() -> None:
    rows = rows_of([[0.2, 0.8], [0.9, 0.1], "yes"] * 10, ["yes", "no", "yes"] * 10)
    report = kpi.compute_kpis(rows, min_samples=5)
    assert report.unusable == {kpi.NEEDS_CLASSES: 20} and report.n_used == 10
    assert report.value("accuracy") == 1.0
    with_classes = kpi.compute_kpis(rows, classes=["no", "yes"], min_samples=5)
    assert with_classes.n_used == 30 and with_classes.n_proba == 20
    assert with_classes.value("accuracy") == 1.0 and with_classes.value("roc_auc") == 1.0


def test_unusable_rows_are_counted_never_raised() -> None:
    good = [([0.3, 0.7], 1), ([0.6, 0.4], 0)] * 30
    bad: list[tuple[Any, Any]] = [
        ({"prediction": None}, 1),  # no prediction
        ({"prediction": 1, "status": "error"}, 1),  # the model raised
        ({"prediction": {"x": 1}}, 1),  # an object, no prediction_field
        ({"prediction": 0.37}, 1),  # a float that is not a class
        ({"prediction": 1}, {"nested": 1}),  # a label that is not a class
        ({"prediction": [0.5, "x"]}, 1),  # a vector with a string in it
        ({"prediction": [0.7, 0.7]}, 0),  # not summing to 1
        ({"prediction": [0.2, 0.3, 0.5]}, 2),  # the wrong length
    ]
    rows = [({"prediction": p}, y) for p, y in good] + bad + [({"prediction": 1}, None)] * 3
    report = kpi.compute_kpis(rows, min_samples=10)
    assert report.n_rows == len(rows) and report.n_missing == 3
    assert report.n_used == 60 and report.n_labelled == 60 + len(bad)
    assert report.unusable == {
        "no_prediction": 1,
        "error_event": 1,
        "bad_prediction": 5,
        "bad_label": 1,
    }
    assert report.n_unusable == len(bad) and report.proba_invalid == 0
    assert report.value("accuracy") == 1.0
    # a class label beside a rejected vector keeps the row for the label KPIs
    side = rows_of([{"y": 1, "p": [0.7, 0.7]}] * 20 + [{"y": 1, "p": [0.1, 0.9]}] * 20, [1] * 40)
    report = kpi.compute_kpis(side, prediction_field="y", score_field="p", min_samples=10)
    assert report.n_used == 40 and report.proba_invalid == 20 and report.n_proba == 20
    assert report.kpis["log_loss"].n == 20 and report.kpis["accuracy"].n == 40
    # regression: strings and non-finite values
    reg = rows_of([1.0, "2", 3.0, None, 5.0] * 4, [1.5, 2.0, float("inf"), 4.0, True] * 4)
    report = kpi.compute_kpis(reg, task="regression", min_samples=2)
    assert report.n_used == 4 and report.unusable == {
        "bad_prediction": 4,
        "bad_label": 8,
        "no_prediction": 4,
    }
    assert report.value("mae") == 0.5


def test_unknown_class_and_bad_classes() -> None:
    rows = rows_of(["a", "b", "z", "a"] * 10, ["a", "b", "a", "q"] * 10)
    report = kpi.compute_kpis(rows, classes=["a", "b"], min_samples=5)
    assert report.unusable == {kpi.UNKNOWN_CLASS: 20} and report.value("accuracy") == 1.0
    with pytest.raises(ValueError, match="distinct"):
        kpi.compute_kpis(rows, classes=["a", "a"])
    with pytest.raises(ValueError, match="task"):
        kpi.compute_kpis(rows, task="ranking")


def test_one_class_only_auc_is_none_with_a_reason() -> None:
    rows = rows_of([[0.2, 0.8], [0.4, 0.6], [0.7, 0.3]] * 20, [1] * 60)
    report = kpi.compute_kpis(rows, min_samples=10)
    auc = report.kpis["roc_auc"]
    assert auc.value is None and auc.lower is None and auc.n == 60
    assert auc.reason == "only one class among the labels: ROC AUC is undefined"
    assert report.value("log_loss") is not None and report.value("accuracy") == pytest.approx(2 / 3)


def test_all_labels_missing() -> None:
    report = kpi.compute_kpis(rows_of([1, 0, 1] * 10, [None] * 30))
    assert (report.n_rows, report.n_missing, report.n_labelled, report.n_used) == (30, 30, 0, 0)
    assert report.reason == "0 labelled predictions, fewer than min_samples=50"
    assert set(report.kpis) == set(kpi.CLASSIFICATION_KPIS)
    assert all(k.value is None and k.reason for k in report.kpis.values())
    empty = kpi.compute_kpis([], task="regression")
    assert empty.n_rows == 0 and set(empty.kpis) == set(kpi.REGRESSION_KPIS)


def test_minimum_sample_size() -> None:
    y, pred = regression_fixture(n=50)
    rows = rows_of(pred.tolist(), y.tolist()) + rows_of([1.0] * 5, [None] * 5)
    below = kpi.compute_kpis(rows[:49] + rows[50:], task="regression", min_samples=50)
    assert below.reason == "49 labelled predictions, fewer than min_samples=50"
    assert below.n_missing == 5 and below.n_used == 49
    assert all(
        k.value is None and k.n == 49 and k.reason == below.reason for k in below.kpis.values()
    )
    at = kpi.compute_kpis(rows, task="regression", min_samples=50)
    assert at.reason is None and at.value("rmse") == pytest.approx(
        skm.root_mean_squared_error(y, pred), abs=TOL
    )
    # the probability KPIs need min_samples rows with probabilities of their own
    mixed = rows_of([[0.3, 0.7]] * 20 + [1] * 40, [1, 0] * 30)
    report = kpi.compute_kpis(mixed, min_samples=30)
    assert report.value("accuracy") == 0.5 and report.kpis["brier"].value is None
    assert report.kpis["brier"].reason == (
        "20 labelled predictions with probabilities, fewer than min_samples=30"
    )


def test_parameters_are_checked() -> None:
    rows = rows_of([1] * 10, [1] * 10)
    sizes = r"n_boot and max_boot_n must be at least 10, n_bins and min_samples at least 1"
    for bad, message in (
        ({"confidence": 1.0}, r"confidence must be in \(0, 1\), got 1\.0"),
        ({"n_boot": 1}, sizes),
        ({"min_samples": 0}, sizes),
        ({"n_bins": 0}, sizes),
    ):
        with pytest.raises(ValueError, match=message):
            kpi.compute_kpis(rows, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window_s"):
        kpi.window_kpis(rows, 0)


# -- confidence intervals -------------------------------------------------------------


def population(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A slightly miscalibrated 3-class model and a regression model, one draw of size n."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.2, (n, 3))
    true_p = softmax(logits)
    u = rng.random((n, 1))
    y = (u > np.cumsum(true_p, axis=1)).sum(axis=1)
    return y, softmax(logits * 1.3), rng.normal(0, 1, n)


def test_intervals_contain_the_population_value_and_have_sensible_width() -> None:
    big_y, big_p, _ = population(1_000_000, seed=10)
    truth = {
        "accuracy": kpi.accuracy(big_y, big_p.argmax(axis=1)),
        "roc_auc": kpi.roc_auc(big_y, big_p),
        "log_loss": kpi.log_loss(big_y, big_p),
        "brier": kpi.brier_score(big_y, big_p),
        "ece": kpi.expected_calibration_error(big_y, big_p),
    }
    for name, avg in (("precision", "macro"), ("recall", "macro"), ("f1", "weighted")):
        i = ("precision", "recall", "f1").index(name)
        truth[f"{name}_{avg}"] = kpi.precision_recall_f1(big_y, big_p.argmax(axis=1), avg)[i]
    y, p, _ = population(20_000, seed=11)
    rows = rows_of(p.tolist(), y.tolist())
    wide = kpi.compute_kpis(rows, confidence=0.999, n_boot=400)
    narrow = kpi.compute_kpis(rows, confidence=0.95, n_boot=400)
    for name, value in truth.items():
        k99, k95 = wide.kpis[name], narrow.kpis[name]
        assert k99.lower is not None and k99.upper is not None
        assert k95.lower is not None and k95.upper is not None and k95.value is not None
        assert k99.lower <= value <= k99.upper, (name, value, k99)
        assert k99.lower < k95.lower <= k95.value <= k95.upper < k99.upper, name
        assert 0 < k95.upper - k95.lower < 0.05, (name, k95)
    # width shrinks like 1/sqrt(n): a quarter of the sample, about twice the width
    quarter = kpi.compute_kpis(rows[:5000], n_boot=400)
    for name in ("accuracy", "roc_auc", "log_loss", "f1_macro"):
        big, small = narrow.kpis[name], quarter.kpis[name]
        ratio = (small.upper - small.lower) / (big.upper - big.lower)  # type: ignore[operator]
        assert 1.6 < ratio < 2.5, (name, ratio)


def test_ece_interval_of_a_calibrated_model_reaches_zero() -> None:
    # ECE is biased upwards: a percentile interval would sit above the estimate, away from 0
    rng = np.random.default_rng(13)
    for n in (1000, 20_000):
        p = softmax(rng.normal(0, 1.2, (n, 3)))
        y = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)  # drawn from p itself
        ece = kpi.compute_kpis(rows_of(p.tolist(), y.tolist())).kpis["ece"]
        assert ece.lower is not None and ece.value is not None and ece.upper is not None
        assert ece.lower < 0.005 and 0 < ece.value <= ece.upper < 0.1, ece


def test_wilson_and_bootstrap_coverage() -> None:
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(400):
        hits = int(rng.binomial(60, 0.9))
        lo, hi = kpi.wilson_interval(hits, 60)
        covered += lo <= 0.9 <= hi
    assert 0.91 <= covered / 400 <= 0.99
    assert kpi.wilson_interval(60, 60)[1] == 1.0 and kpi.wilson_interval(60, 60)[0] < 1.0
    with pytest.raises(ValueError, match="n must be positive"):
        kpi.wilson_interval(0, 0)
    covered = 0
    for i in range(100):  # MAE of N(0, 1) errors is sqrt(2 / pi)
        err = rng.normal(0, 1, 300)
        report = kpi.compute_kpis(rows_of(err.tolist(), [0.0] * 300), task="regression", seed=i)
        mae = report.kpis["mae"]
        covered += mae.lower <= math.sqrt(2 / math.pi) <= mae.upper  # type: ignore[operator]
    assert covered >= 85


def test_bootstrap_is_deterministic_and_capped_sample_keeps_the_width() -> None:
    y, p, noise = population(6000, seed=12)
    rows = rows_of(p.tolist(), y.tolist())
    a, b = kpi.compute_kpis(rows, seed=7), kpi.compute_kpis(rows, seed=7)
    assert a == b
    c = kpi.compute_kpis(rows, seed=8)
    assert c.kpis["roc_auc"].value == a.kpis["roc_auc"].value
    assert c.kpis["roc_auc"].lower != a.kpis["roc_auc"].lower
    assert c.kpis["accuracy"] == a.kpis["accuracy"]  # Wilson: no randomness
    full = kpi.compute_kpis(rows, max_boot_n=6000, n_boot=300)
    capped = kpi.compute_kpis(rows, max_boot_n=500, n_boot=300)
    for name in ("roc_auc", "log_loss", "brier", "f1_macro"):
        w_full = full.kpis[name].upper - full.kpis[name].lower  # type: ignore[operator]
        w_capped = capped.kpis[name].upper - capped.kpis[name].lower  # type: ignore[operator]
        assert 0.7 < w_capped / w_full < 1.4, (name, w_full, w_capped)
    reg = kpi.compute_kpis(rows_of((noise + 3).tolist(), [3.0] * 6000), task="regression")
    assert reg.kpis["r2"].value is None  # constant labels
    assert reg.kpis["rmse"].lower < 1 < reg.kpis["rmse"].upper  # type: ignore[operator]


# -- windows and the late / missing label join through the real store ------------------

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, a multiple of 600 s


def _rfc3339(ts_s: int) -> str:
    return datetime.fromtimestamp(ts_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event(i: int, ts_s: int, prediction: Any) -> dict[str, Any]:
    return validate_event(
        {
            "model": "m",
            "version": "1",
            "latency_ms": 1.0,
            "request_id": f"r{i}",
            "event_id": f"id-{i:04d}",
            "ts": _rfc3339(ts_s),
            "prediction": prediction,
        }
    )


def _feedback(i: int, label: Any, ts_s: int) -> dict[str, Any]:
    return validate_feedback(
        {"model": "m", "request_id": f"r{i}", "label": label, "ts": _rfc3339(ts_s)}
    )


def test_late_labels_update_only_their_window(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store.db")
    rng = np.random.default_rng(4)
    events, feedback = [], []
    truth: dict[int, int] = {}
    for i in range(300):  # three 10-minute windows of 100 predictions each
        window, p1 = divmod(i, 100)[0], float(rng.random())
        y = int(rng.random() < p1)
        truth[i] = y
        events.append(event_row(_event(i, T0 + 600 * window + i % 100, [1 - p1, p1])))
        late = window == 0 and i % 2 == 0  # half of the first window's labels come late
        if not late and i % 10 != 9:  # and every tenth label never comes
            feedback.append(feedback_row(_feedback(i, y, T0 + 1800)))
    assert store.insert_event_rows(json.dumps(events)) == 300
    store.insert_feedback_rows(json.dumps(feedback))

    before = kpi.window_kpis(store.joined("m", since_us=T0 * 10**6), 600, min_samples=30)
    assert [r.window_start_us for r in before] == [(T0 + 600 * w) * 10**6 for w in range(3)]
    assert all(r.window_end_us == r.window_start_us + 600 * 10**6 for r in before)  # type: ignore[operator]
    assert [(r.n_rows, r.n_labelled, r.n_missing) for r in before] == [
        (100, 40, 60),
        (100, 90, 10),
        (100, 90, 10),
    ]
    first = before[0]
    assert first.reason is None and first.value("roc_auc") is not None

    late = [feedback_row(_feedback(i, truth[i], T0 + 7200)) for i in range(0, 100, 2)]
    store.insert_feedback_rows(json.dumps(late))
    after = kpi.window_kpis(store.joined("m", since_us=T0 * 10**6), 600, min_samples=30)
    assert after[1:] == before[1:]  # identical, intervals included
    assert (after[0].n_labelled, after[0].n_missing) == (90, 10)
    assert after[0].kpis != first.kpis
    # the window's KPIs are exactly those of its labelled events, missing labels excluded
    known = [i for i in range(100) if i % 2 == 0 or i % 10 != 9]
    y = [truth[i] for i in known]
    p1 = [json.loads(events[i][10])[1] for i in known]
    assert abs(after[0].value("roc_auc") - skm.roc_auc_score(y, p1)) < TOL  # type: ignore[operator]
    assert abs(after[0].value("log_loss") - skm.log_loss(y, p1)) < TOL  # type: ignore[operator]
    # one report over everything agrees with the store's own counts
    total = kpi.compute_kpis(store.joined("m"), min_samples=30)
    assert total.n_rows == store.count_events("m") and total.n_labelled == store.count_feedback("m")
    store.close()


def test_windows_are_aligned_to_epoch_multiples() -> None:
    rows = [
        ({"ts": "2026-01-01T00:09:59.999999Z", "prediction": 1}, 1),
        ({"ts": "2026-01-01T00:10:00Z", "prediction": 1}, 0),
        ({"ts": "2026-01-01T00:10:00", "prediction": 0}, None),  # naive: UTC
        ({"ts": "not a time", "prediction": 0}, 0),  # in no window
        {"ts_us": (T0 + 1300) * 10**6, "prediction": 1, "label": 1},
    ]  # a flat dict row
    reports = kpi.window_kpis(rows, 600, min_samples=1)
    assert [(r.window_start_us, r.n_rows, r.n_missing, r.value("accuracy")) for r in reports] == [
        (T0 * 10**6, 1, 0, 1.0),
        ((T0 + 600) * 10**6, 2, 1, 0.0),
        ((T0 + 1200) * 10**6, 1, 0, 1.0),
    ]


def test_an_object_prediction_is_scored_at_the_argmax_of_its_probabilities() -> None:
    """A model spec's score_field without prediction_field: the stored prediction is the
    whole object, its class the argmax of the probabilities found there."""
    y, score = binary_fixture(n=120)
    base = kpi.compute_kpis(
        rows_of([[1 - s, s] for s in score.tolist()], y.tolist()), min_samples=100
    )
    objects = [{"label": "ignored", "proba": [1 - s, s]} for s in score.tolist()]
    report = kpi.compute_kpis(rows_of(objects, y.tolist()), score_field="proba", min_samples=100)
    assert report.kpis == base.kpis and report.unusable == {}
