"""The features of a comparison, and each one's pair or table for the statistics.

:func:`_columns_of` reads the inputs of :func:`~mlwatch.stats.drift.compare`: raw data
(DataFrames or mappings of columns) or :class:`~mlwatch.stats.drift.prepared.PreparedData` on
both sides, two :class:`~mlwatch.stats.profile.DatasetProfile`, or a reference profile
and raw current data (profiled on the reference's layout first). The features are the
reference's columns (or ``columns``), in order; a feature absent from the current data
gets an empty side and the flag ``missing_in_current``. Each feature's pair is built
when asked for, on the worker that evaluates it: an exact pair
(:class:`~mlwatch.stats.drift.prepared._CachingPair`) or a category table from raw data, a
histogram pair or category table (:mod:`.histograms`) from profiles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from mlwatch.errors import ConfigError
from mlwatch.stats.categorical_profile import CategoricalProfile
from mlwatch.stats.columns import NUMERIC, Quality, as_columns
from mlwatch.stats.drift.prepared import (
    PreparedColumn,
    PreparedData,
    _CachingPair,
    _prepared,
    _resolve_types,
)
from mlwatch.stats.histograms import HistogramPair, category_table
from mlwatch.stats.numeric_profile import NumericProfile
from mlwatch.stats.pairs import CategoryTable, NumericPair
from mlwatch.stats.profile import DatasetProfile

_Column = tuple[str, NumericPair | CategoryTable, Quality, Quality, tuple[str, ...]]
"""(type, pair or table, reference quality, current quality, flags) of one feature."""


def _columns_of(
    reference: Any, current: Any, types: Mapping[str, str] | None, columns: Sequence[str] | None
) -> tuple[list[str], dict[str, str], Callable[[str], _Column]]:
    """The features to compare and a function building one feature's pair (raw or profiles)."""
    if isinstance(reference, DatasetProfile) and not isinstance(current, DatasetProfile):
        raw, current = current, reference.new_window()
        current.update(raw)  # profile the current data on the reference's layout
    if isinstance(reference, DatasetProfile) or isinstance(current, DatasetProfile):
        if not (isinstance(reference, DatasetProfile) and isinstance(current, DatasetProfile)):
            raise ConfigError("reference", "a current profile needs a reference profile")
        return _profile_columns(reference, current, columns)
    return _raw_columns(reference, current, types, columns)


def _profile_columns(
    reference: DatasetProfile, current: DatasetProfile, columns: Sequence[str] | None
) -> tuple[list[str], dict[str, str], Callable[[str], _Column]]:
    """Two profiles: each feature's histogram pair or category table (:mod:`.histograms`)."""
    names = list(columns) if columns is not None else list(reference.columns)
    unknown = [n for n in names if n not in reference.columns]
    if unknown:
        raise ConfigError("columns", f"not in the reference profile: {unknown}")
    kinds = {n: reference.columns[n].type for n in names}
    return names, kinds, partial(_profile_column, reference, current)


def _raw_columns(
    reference: Any, current: Any, types: Mapping[str, str] | None, columns: Sequence[str] | None
) -> tuple[list[str], dict[str, str], Callable[[str], _Column]]:
    """Raw or prepared data on both sides: each feature's exact pair or category table."""
    ref_cols: Mapping[str, Any] = (
        reference.columns if isinstance(reference, PreparedData) else as_columns(reference)
    )
    cur_cols: Mapping[str, Any] = (
        current.columns if isinstance(current, PreparedData) else as_columns(current)
    )
    names = list(columns) if columns is not None else list(ref_cols)
    unknown = [n for n in names if n not in ref_cols]
    if unknown:
        raise ConfigError("columns", f"not in the reference: {unknown}")
    if isinstance(reference, PreparedData):
        kinds = {n: reference.columns[n].type for n in names}
    else:
        kinds = _resolve_types({n: ref_cols[n] for n in names}, types)

    def column(name: str) -> _Column:
        kind = kinds[name]
        ref = _prepared(ref_cols[name], kind)
        absent = name not in cur_cols
        cur = PreparedColumn.absent(kind) if absent else _prepared(cur_cols[name], kind)
        flags = ("missing_in_current",) if absent else ()
        data: NumericPair | CategoryTable
        if kind == NUMERIC:
            assert ref.values is not None and cur.values is not None
            data = _CachingPair(ref, cur.values)
        else:
            assert ref.counts is not None and cur.counts is not None
            data = CategoryTable.from_counts(ref.counts, cur.counts)
        return kind, data, ref.quality, cur.quality, flags

    return names, kinds, column


def _profile_column(reference: DatasetProfile, current: DatasetProfile, name: str) -> _Column:
    ref = reference.columns[name]
    cur = current.columns.get(name)
    flags: tuple[str, ...] = ()
    if cur is None:
        cur, flags = ref.empty_like(), ("missing_in_current",)
    data: NumericPair | CategoryTable
    if isinstance(ref, NumericProfile) and isinstance(cur, NumericProfile):
        data = HistogramPair(ref, cur)
    elif isinstance(ref, CategoricalProfile) and isinstance(cur, CategoricalProfile):
        data = category_table(ref, cur)
    else:
        raise ValueError(
            f"feature {name!r} is {ref.type} in the reference profile and "
            f"{cur.type} in the current one"
        )
    return ref.type, data, ref.quality, cur.quality, flags
