"""The ``models`` list of a config file, checked into :class:`~mlwatch.settings.specs.ModelSpec`
objects; every error names the key (``models[1].classes``) and the file."""

from __future__ import annotations

import itertools
import math
from typing import Any

from mlwatch.errors import ConfigError, TrackingError, did_you_mean
from mlwatch.settings.alerts import parse_alerts
from mlwatch.settings.monitoring import MONITORING_KEYS, parse_monitoring
from mlwatch.settings.retrain import parse_retrain
from mlwatch.settings.specs import (
    FEATURE_TYPES,
    SENSITIVE_ACTIONS,
    TASKS,
    FeatureSpec,
    ModelSpec,
)
from mlwatch.tracking.uris import is_mlflow_uri, parse_model_uri
from mlwatch.wire import NAME_RE

MODEL_KEYS = frozenset(
    {
        "name",
        "version",
        "task",
        "features",
        "prediction_field",
        "label_field",
        "score_field",
        "classes",
        "value_buckets",
        "alerts",
        "retrain",
        *MONITORING_KEYS,
    }
)


def parse_models(raw: Any, source: str) -> tuple[ModelSpec, ...]:
    """The ``models`` list: one :class:`ModelSpec` per entry, names distinct."""
    if not isinstance(raw, list):
        raise ConfigError("models", "expected a list of model specs", source=source)
    specs: list[ModelSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        specs.append(_parse_model(item, f"models[{i}]", source, seen))
    return tuple(specs)


def _parse_model(item: Any, at: str, source: str, seen: set[str]) -> ModelSpec:
    """One model spec, its keys checked in the order an error names the first problem."""
    if not isinstance(item, dict):
        raise ConfigError(at, "expected a mapping with at least 'name'", source=source)
    if unknown := set(item) - MODEL_KEYS:
        key = sorted(unknown)[0]
        hint = did_you_mean(str(key), MODEL_KEYS)
        raise ConfigError(f"{at}.{key}", f"unknown key{hint}", source=source)
    name = item.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(
            f"{at}.name",
            f"expected a name of letters, digits, '_.:-' (at most 128), got {name!r}",
            source=source,
        )
    if name in seen:
        raise ConfigError(f"{at}.name", f"model {name!r} is listed twice", source=source)
    seen.add(name)
    task = item.get("task", "classification")
    if task not in TASKS:
        raise ConfigError(
            f"{at}.task", f"must be one of {', '.join(TASKS)}, got {task!r}", source=source
        )
    version, mlflow = _version(item.get("version"), f"{at}.version", source)
    features = _parse_features(item.get("features", []), f"{at}.features", source)
    for key in ("prediction_field", "label_field", "score_field"):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise ConfigError(f"{at}.{key}", "expected a dotted path string", source=source)
    classes = _classes(item, at, source)
    monitored = any(k in item for k in MONITORING_KEYS)
    return ModelSpec(
        name=name,
        version=version,
        mlflow=mlflow,
        task=task,
        features=features,
        prediction_field=item.get("prediction_field"),
        label_field=item.get("label_field"),
        score_field=item.get("score_field"),
        classes=classes,
        value_buckets=_value_buckets(item, at, source),
        alerts=parse_alerts(item["alerts"], f"{at}.alerts", source) if "alerts" in item else None,
        retrain=(
            parse_retrain(item["retrain"], f"{at}.retrain", source) if "retrain" in item else None
        ),
        monitoring=parse_monitoring(item, at, source) if monitored else None,
    )


def _version(raw: Any, at: str, source: str) -> tuple[str | None, str | None]:
    """(version, MLflow model URI): a ``models:/`` or ``runs:/`` URI leaves the version to
    MLflow, which names it when the URI is resolved."""
    if raw is None:
        return None, None
    if not is_mlflow_uri(raw):
        return str(raw), None
    try:
        parse_model_uri(raw)
    except TrackingError as exc:
        raise ConfigError(at, str(exc), source=source) from None
    return None, str(raw)


def _value_buckets(item: dict[str, Any], at: str, source: str) -> tuple[float, ...] | None:
    """The upper bounds of a regression model's prediction-value histogram."""
    raw = item.get("value_buckets")
    if raw is None:
        return None
    ok = isinstance(raw, list) and 0 < len(raw) <= 50
    values = (
        [
            float(v)
            for v in raw
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
        if ok
        else []
    )
    if not ok or len(values) != len(raw) or any(b <= a for a, b in itertools.pairwise(values)):
        raise ConfigError(
            f"{at}.value_buckets",
            "expected 1 to 50 increasing numbers (the histogram's upper bounds)",
            source=source,
        )
    return tuple(values)


def _classes(item: dict[str, Any], at: str, source: str) -> tuple[Any, ...] | None:
    classes = item.get("classes")
    if classes is None:
        return None
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or any(not isinstance(c, (str, int)) or isinstance(c, bool) for c in classes)
    ):
        raise ConfigError(
            f"{at}.classes",
            "expected a list of at least two class labels (strings or integers)",
            source=source,
        )
    return tuple(classes)


def _parse_features(raw: Any, at: str, source: str) -> tuple[FeatureSpec, ...]:
    if not isinstance(raw, list):
        raise ConfigError(at, "expected a list of features", source=source)
    out: list[FeatureSpec] = []
    for j, feat in enumerate(raw):
        fat = f"{at}[{j}]"
        if isinstance(feat, str):
            feat = {"name": feat}
        if not isinstance(feat, dict) or not isinstance(feat.get("name"), str) or not feat["name"]:
            raise ConfigError(
                f"{fat}.name", "every feature needs a non-empty 'name'", source=source
            )
        unknown = set(feat) - {"name", "type", "sensitive"}
        if unknown:
            key = sorted(unknown)[0]
            hint = did_you_mean(str(key), ("name", "type", "sensitive"))
            raise ConfigError(f"{fat}.{key}", f"unknown key{hint}", source=source)
        ftype = feat.get("type", "numeric")
        if ftype not in FEATURE_TYPES:
            raise ConfigError(
                f"{fat}.type", f"must be numeric or categorical, got {ftype!r}", source=source
            )
        sensitive = feat.get("sensitive")
        if sensitive is True:
            sensitive = "hash"
        elif sensitive is False:
            sensitive = None
        if sensitive is not None and sensitive not in SENSITIVE_ACTIONS:
            raise ConfigError(
                f"{fat}.sensitive",
                f"must be true, false, hash or drop, got {sensitive!r}",
                source=source,
            )
        out.append(FeatureSpec(name=feat["name"], type=ftype, sensitive=sensitive))
    return tuple(out)
