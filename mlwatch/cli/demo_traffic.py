"""What ``mlwatch demo`` serves: a small scikit-learn classifier on the breast-cancer data
set, traffic through ``@mlwatch.monitor`` with a drift injected half-way and some failing
requests, and delayed ground truth for part of it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlwatch.progress import Progress

MODEL = "breast-cancer"
VERSION = "1"
DRIFTED = ("mean radius", "mean texture")
LABELLED_SHARE = 0.6
BAD_EVERY = 97  # every 97th request is malformed on purpose
PARAMS = {"model": "LogisticRegression", "C": 1.0, "max_iter": 1000, "test_size": 0.4}


@dataclass
class Model:
    """The trained classifier and the held-out rows the traffic is drawn from."""

    clf: Any
    names: list[str]
    x_test: Any
    y_test: Any
    accuracy: float
    n_train: int


@dataclass
class Traffic:
    """What was served: the labels to send later, the failures, the times of the shift."""

    truth: list[tuple[str, int]] = field(default_factory=list)
    failures: int = 0
    drift_at: int = 0
    times: tuple[float, float, float] = (0.0, 0.0, 0.0)  # start, shift, end (epoch s)


def train() -> Model:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    names = [str(n) for n in data.feature_names]
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=PARAMS["test_size"], random_state=0, stratify=data.target
    )
    clf = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=PARAMS["max_iter"], C=PARAMS["C"])
    )
    clf.fit(x_train, y_train)
    return Model(clf, names, x_test, y_test, float(clf.score(x_test, y_test)), len(x_train))


def write_reference(model: Model, path: Path, rows: int) -> None:
    """Validation traffic as the model saw it before the change: the same held-out rows
    and measurement noise as the served requests, another draw."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(11)
    reference = model.x_test[rng.integers(len(model.x_test), size=rows)] * rng.normal(
        1.0, 0.02, size=(rows, len(model.names))
    )
    pd.DataFrame(reference, columns=model.names).to_csv(path, index=False)


def serve(model: Model, requests: int) -> Traffic:
    """``requests`` predictions through ``@mlwatch.monitor`` (configured by the caller)."""
    import numpy as np

    import mlwatch

    @mlwatch.monitor(request_id="request_id")
    def predict(features: dict[str, float], request_id: str) -> int:
        if features["mean area"] <= 0:
            raise ValueError("mean area must be positive")
        row = np.array([[features[n] for n in model.names]])
        return int(model.clf.predict(row)[0])

    rng = np.random.default_rng(7)
    traffic = Traffic(drift_at=requests // 2)
    t_start = t_shift = time.time()
    bar = Progress("serving predictions", requests, enabled=True)
    for i in range(requests):
        j = int(rng.integers(len(model.x_test)))
        row = model.x_test[j] * rng.normal(1.0, 0.02, size=len(model.names))
        features = dict(zip(model.names, row.tolist(), strict=True))
        if i == traffic.drift_at:
            t_shift = time.time()
        if i >= traffic.drift_at:  # the population changes: bigger, rougher cells
            for name in DRIFTED:
                features[name] *= 1.35
        if i % BAD_EVERY == 0:
            features["mean area"] = -1.0  # a malformed request the model rejects
        request_id = f"req-{i:06d}"
        try:
            predict(features, request_id=request_id)
        except ValueError:
            traffic.failures += 1
        if rng.random() < LABELLED_SHARE:
            traffic.truth.append((request_id, int(model.y_test[j])))
        bar.update(i + 1)
    mlwatch.flush()
    traffic.times = (t_start, t_shift, time.time() + 0.001)
    return traffic


def send_truth(traffic: Traffic) -> None:
    """The ground truth, arriving after the predictions."""
    import mlwatch

    bar = Progress("sending ground truth", len(traffic.truth), enabled=True)
    for k, (request_id, label) in enumerate(traffic.truth):
        mlwatch.log_feedback(request_id, label, model=MODEL)
        bar.update(k + 1)
    mlwatch.flush()
