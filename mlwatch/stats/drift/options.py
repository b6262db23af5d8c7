"""The options of a drift comparison, checked once; per feature, its method, threshold
and effect size.

:meth:`_Options.build` raises :class:`~mlwatch.errors.ConfigError` naming the argument
(``method``, ``method['col']``, ``alpha``, ``thresholds['ks']``, ``correction``,
``min_effect``, ``drift_share``, ``bins``), in that order. Per feature (the rules are in
the docstring of :mod:`.drift`): :func:`_choose` the method (the one asked for when it
accepts the column's type, else :func:`~mlwatch.stats.registry.auto_method`),
:meth:`_Options.threshold_for` its threshold, :func:`_effect` the effect size that
``min_effect`` is compared with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mlwatch.errors import ConfigError
from mlwatch.stats import distances as dk
from mlwatch.stats.pairs import CategoryTable, NumericPair, Score
from mlwatch.stats.registry import TEST, DriftMethod, auto_method, get_method

CORRECTIONS = (None, "bonferroni", "bh")


def _check_name(key: str, name: str) -> None:
    """A registered method name, else a ConfigError for ``key``."""
    try:
        get_method(name)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None


def _check_method(method: str | Mapping[str, str] | None) -> None:
    """``method``: None, ``"auto"``, a method name, or ``{column: name or "auto"}``."""
    if isinstance(method, str):
        if method != "auto":
            _check_name("method", method)
    elif isinstance(method, Mapping):
        for column, m in method.items():
            if m != "auto":
                _check_name(f"method[{column!r}]", m)
    elif method is not None:
        raise ConfigError("method", f"a method name or a mapping, not {type(method).__name__}")


def _check_thresholds(thresholds: Mapping[str, float] | None) -> None:
    """``{method name: number >= 0}``."""
    for name, t in (thresholds or {}).items():
        _check_name(f"thresholds[{name!r}]", name)
        if not (isinstance(t, (int, float)) and t >= 0):
            raise ConfigError(f"thresholds[{name!r}]", f"must be a number >= 0, got {t!r}")


@dataclass(frozen=True)
class _Options:
    method: str | Mapping[str, str] | None
    alpha: float
    thresholds: Mapping[str, float]
    correction: str | None
    min_effect: float | None
    drift_share: float
    bins: int

    @classmethod
    def build(
        cls,
        method: str | Mapping[str, str] | None,
        alpha: float,
        thresholds: Mapping[str, float] | None,
        correction: str | None,
        min_effect: float | None,
        drift_share: float,
        bins: int,
    ) -> _Options:
        _check_method(method)
        if not 0 < alpha < 1:
            raise ConfigError("alpha", f"must be in (0, 1), got {alpha}")
        _check_thresholds(thresholds)
        if correction not in CORRECTIONS:
            raise ConfigError(
                "correction", f"must be None, 'bonferroni' or 'bh', got {correction!r}"
            )
        if min_effect is not None and not min_effect >= 0:
            raise ConfigError("min_effect", f"must be >= 0 or None, got {min_effect}")
        if not 0 <= drift_share <= 1:
            raise ConfigError("drift_share", f"must be in [0, 1], got {drift_share}")
        if bins < 2:
            raise ConfigError("bins", f"must be >= 2, got {bins}")
        return cls(
            None if method == "auto" else method,
            float(alpha),
            dict(thresholds or {}),
            correction,
            min_effect,
            float(drift_share),
            int(bins),
        )

    def method_for(
        self, name: str, kind: str, n_ref: int, n_cur: int, n_categories: int
    ) -> DriftMethod:
        forced = self.method.get(name) if isinstance(self.method, Mapping) else self.method
        if forced and forced != "auto" and kind in get_method(forced).types:
            return get_method(forced)
        return get_method(auto_method(kind, n_ref, n_cur, n_categories))

    def threshold_for(self, method: DriftMethod) -> float:
        if method.name in self.thresholds:
            return float(self.thresholds[method.name])
        return self.alpha if method.kind == TEST else method.default_threshold


def _choose(opts: _Options, name: str, kind: str, data: NumericPair | CategoryTable) -> DriftMethod:
    n_cats = data.n_categories if isinstance(data, CategoryTable) else 0
    return opts.method_for(name, kind, data.n_ref, data.n_cur, n_cats)


def _effect(method: DriftMethod, data: NumericPair | CategoryTable, score: Score) -> float | None:
    """The effect size compared with ``min_effect`` (see the docstring of :mod:`.drift`)."""
    if isinstance(data, CategoryTable):
        if method.name == "js":
            return score.score
        return dk.js_distance(data.ref, data.cur)
    if method.name == "wasserstein":
        return score.score
    with np.errstate(all="ignore"):
        return get_method("wasserstein").compute(data).score
