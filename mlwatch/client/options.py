"""The arguments of ``@monitor``, checked at decoration: bad ones are programmer errors and
raise :class:`~mlwatch.errors.ConfigError` naming the option, before any call is made.

``labels`` names match ``[A-Za-z_][A-Za-z0-9_]{0,63}`` and values are strings of at most
128 printable characters; ``run_id`` is a string of at most 128 printable characters;
``params`` is a mapping; ``features``, ``prediction`` and ``request_id`` are a name or a
callable, and a name must be a parameter of the function.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlwatch.errors import ConfigError, TrackingError
from mlwatch.tracking.uris import is_mlflow_uri, parse_model_uri
from mlwatch.wire import LABEL_KEY_RE, MAX_LABELS, MAX_NAME, NAME_RE

#: The index of a keyword-only parameter: never positional.
NOWHERE = 1 << 30


def position(fn: Callable[..., Any], spec: str | None, option: str) -> tuple[int, str | None]:
    """Where a parameter is in a call: (positional index, keyword name)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature
        if spec is not None:
            raise ConfigError(option, f"cannot read the signature of {fn!r}") from None
        return 0, None
    if spec is None:  # the first positional parameter, skipping self/cls
        skip = 1 if params and params[0].name in ("self", "cls") else 0
        params = params[skip:]
        if params and params[0].kind in (
            params[0].POSITIONAL_ONLY,
            params[0].POSITIONAL_OR_KEYWORD,
            params[0].VAR_POSITIONAL,
        ):
            return skip, params[0].name
        return skip, None
    for i, p in enumerate(params):
        if p.name == spec:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                break
            return (NOWHERE if p.kind is p.KEYWORD_ONLY else i), spec
    names = ", ".join(p.name for p in params)
    raise ConfigError(option, f"{fn.__qualname__}() has no parameter {spec!r} (has: {names})")


def _text(value: Any, lo: int) -> bool:
    """A string of ``lo`` to MAX_NAME printable characters (what the wire takes in names)."""
    return isinstance(value, str) and lo <= len(value) <= MAX_NAME and value.isprintable()


def _check_labels(labels: Any) -> None:
    if not isinstance(labels, Mapping) or len(labels) > MAX_LABELS:
        raise ConfigError("labels", f"expected a mapping of at most {MAX_LABELS} labels")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.fullmatch(key):
            raise ConfigError(
                "labels",
                f"label names are letters, digits and '_' (at most 64), "
                f"not starting with a digit; got {key!r}",
            )
        if not _text(value, 0):
            raise ConfigError(
                "labels",
                f"label {key!r}: expected a string of at most "
                f"{MAX_NAME} printable characters, got {value!r:.60}",
            )


def check(
    model: str | None,
    version: str | None,
    sample_rate: float | None,
    labels: Mapping[str, str] | None,
    feature_names: Sequence[str] | None,
    prediction: Any,
    features: Any,
    request_id: Any,
    run_id: Any,
    params: Any,
) -> None:
    if model is not None and (not isinstance(model, str) or not NAME_RE.fullmatch(model)):
        raise ConfigError(
            "model", f"expected letters, digits and '_.:-' (at most {MAX_NAME}), got {model!r}"
        )
    if version is not None and not _text(version, 1):
        raise ConfigError(
            "version",
            f"expected a string of 1 to {MAX_NAME} printable characters, got {version!r:.60}",
        )
    if is_mlflow_uri(version):
        try:
            parse_model_uri(str(version))
        except TrackingError as exc:
            raise ConfigError("version", str(exc)) from None
    if run_id is not None and not _text(run_id, 0):
        raise ConfigError(
            "run_id",
            f"expected a string of at most {MAX_NAME} printable characters, got {run_id!r:.60}",
        )
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(
            "params",
            f"expected a mapping of parameter names to values, got {type(params).__name__}",
        )
    if sample_rate is not None and not (
        isinstance(sample_rate, (int, float)) and 0.0 <= sample_rate <= 1.0
    ):
        raise ConfigError("sample_rate", f"expected a number from 0 to 1, got {sample_rate!r}")
    if labels is not None:
        _check_labels(labels)
    if feature_names is not None and (
        isinstance(feature_names, str) or not all(isinstance(n, str) for n in feature_names)
    ):
        raise ConfigError("feature_names", "expected a sequence of strings")
    for option, value in (
        ("prediction", prediction),
        ("features", features),
        ("request_id", request_id),
    ):
        if value is not None and not isinstance(value, str) and not callable(value):
            raise ConfigError(option, f"expected a name or a callable, got {value!r}")
