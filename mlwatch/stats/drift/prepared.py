"""Raw columns made ready once: sorted finite values (numeric) or category counts.

:func:`prepare` turns a table into :class:`PreparedData`, the reference to pass to many
:func:`~mlwatch.stats.drift.compare` calls: its columns are not sorted or counted again,
and the quantile edges and standard deviation the statistics need are computed once
and kept in the :class:`PreparedColumn` (:class:`_CachingPair`). A column's type is
``types[name]``, else inferred from the column (:func:`~mlwatch.stats.columns.infer_type`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlwatch.errors import ConfigError
from mlwatch.stats.columns import (
    CATEGORICAL,
    COLUMN_TYPES,
    NUMERIC,
    Quality,
    as_columns,
    count_categories,
    infer_type,
    numeric_quality,
    to_float,
)
from mlwatch.stats.drift.parallel import _run_columns
from mlwatch.stats.pairs import ExactPair


@dataclass
class PreparedColumn:
    """A raw column made ready once: sorted finite values, or category counts."""

    type: str
    quality: Quality
    values: np.ndarray | None = None  # numeric: sorted finite values
    counts: dict[str, int] | None = None  # categorical
    edges: dict[int, np.ndarray] = field(default_factory=dict)  # reference-quantile edges
    std: float | None = None

    @classmethod
    def build(cls, col: Any, kind: str) -> PreparedColumn:
        if kind == NUMERIC:
            x, invalid = to_float(col)
            quality, finite = numeric_quality(x, invalid)
            return cls(NUMERIC, quality, values=np.sort(finite))
        cc = count_categories(col)
        return cls(CATEGORICAL, cc.quality, counts=cc.counts)

    @classmethod
    def absent(cls, kind: str) -> PreparedColumn:
        return cls(kind, Quality(), values=np.empty(0), counts={})


@dataclass
class PreparedData:
    """Raw data sorted and counted once: the reference of many :func:`~mlwatch.stats.drift.compare` calls."""

    columns: dict[str, PreparedColumn]

    @property
    def types(self) -> dict[str, str]:
        return {name: col.type for name, col in self.columns.items()}


def prepare(
    data: Any, types: Mapping[str, str] | None = None, *, workers: int | None = None
) -> PreparedData:
    """Sort (numeric) and count (categorical) every column of ``data`` once.

    ``types`` as in :func:`~mlwatch.stats.drift.compare`. Comparing many windows against one reference, pass
    the prepared reference: its columns are not sorted again, and its quantile edges and
    standard deviation are computed once.
    """
    cols = as_columns(data)
    kinds = _resolve_types(cols, types)
    built = _run_columns(
        list(cols), kinds, lambda n: PreparedColumn.build(cols[n], kinds[n]), workers
    )
    return PreparedData(dict(zip(cols, built, strict=True)))


def _resolve_types(cols: Mapping[str, Any], types: Mapping[str, str] | None) -> dict[str, str]:
    out = {}
    for name, col in cols.items():
        kind = (types or {}).get(name) or infer_type(col)
        if kind not in COLUMN_TYPES:
            raise ConfigError(
                f"types[{name!r}]", f"must be 'numeric' or 'categorical', not {kind!r}"
            )
        out[name] = kind
    return out


def _prepared(col: Any, kind: str) -> PreparedColumn:
    if isinstance(col, PreparedColumn):
        if col.type != kind:
            raise ConfigError("types", f"a prepared {col.type} column cannot be compared as {kind}")
        return col
    return PreparedColumn.build(col, kind)


class _CachingPair(ExactPair):
    """An exact pair that leaves its reference's standard deviation in the prepared column."""

    def __init__(self, ref: PreparedColumn, cur: np.ndarray) -> None:
        assert ref.values is not None
        super().__init__(ref.values, cur, edges_cache=ref.edges, std=ref.std)
        self._ref = ref

    def ref_std(self) -> float:
        std = super().ref_std()
        self._ref.std = std
        return std
