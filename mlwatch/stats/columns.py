"""Turning user columns into what the statistics need, and counting what is wrong with them.

Inputs come from two places: tables handed to :func:`mlwatch.stats.canary` (pandas
DataFrames, dicts of numpy arrays or lists) and batches pivoted from JSON events in the
sidecar (lists of floats, strings and ``None``). Both go through the same functions here,
so a value is classified the same way whether it reaches a raw comparison or a profile.

Classification of one value:

- **missing**: ``None``, a float NaN, ``pandas.NA`` / ``NaT``;
- **posinf** / **neginf**: ``+inf`` / ``-inf`` (a float, or in a categorical column too);
- **invalid**: in a numeric column, a value ``float()`` does not accept (e.g. ``"abc"``);
- otherwise the value is **used**: a finite float for numeric columns, or a category key
  for categorical ones.

Drift is computed on the used values only; the other counts are reported as data-quality
figures (:class:`Quality`), never dropped silently.

Category keys are strings, because profiles are stored as JSON and JSON object keys are
strings: ``str`` values stay as they are, booleans become ``"true"``/``"false"`` (as in
the events' JSON), integers and integral floats become ``"1"`` (``1`` and ``1.0`` from a
JSON round trip are the same category), other floats ``repr(x)``, anything else ``str(x)``.

>>> col = [1.0, None, float("inf"), "abc", 2]
>>> values, invalid = to_float(col)
>>> values.tolist(), invalid
([1.0, nan, inf, nan, 2.0], 1)
>>> count_categories(["a", "b", None, "a", True]).counts
{'a': 2, 'b': 1, 'true': 1}
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

NUMERIC = "numeric"
CATEGORICAL = "categorical"
COLUMN_TYPES = (NUMERIC, CATEGORICAL)

_NUMBER_TYPES = (int, float, np.integer, np.floating)


@dataclass(frozen=True)
class Quality:
    """Data-quality counts of one column on one side of a comparison.

    ``used`` is what the drift statistics saw: ``count - missing - posinf - neginf -
    invalid``.
    """

    count: int = 0
    missing: int = 0
    posinf: int = 0
    neginf: int = 0
    invalid: int = 0

    @property
    def used(self) -> int:
        return self.count - self.missing - self.posinf - self.neginf - self.invalid

    def __add__(self, other: Quality) -> Quality:
        return Quality(
            self.count + other.count,
            self.missing + other.missing,
            self.posinf + other.posinf,
            self.neginf + other.neginf,
            self.invalid + other.invalid,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "count": self.count,
            "missing": self.missing,
            "posinf": self.posinf,
            "neginf": self.neginf,
            "invalid": self.invalid,
            "used": self.used,
        }


def is_pandas(obj: Any) -> bool:
    """True for pandas objects, without importing pandas (it is not a sidecar dependency)."""
    module = type(obj).__module__
    return module == "pandas" or module.startswith("pandas.")


def is_missing(value: Any) -> bool:
    """None, NaN, pandas.NA and NaT: the values a feature can take when it is absent."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def as_columns(data: Any) -> dict[str, Any]:
    """A table as ``{name: column}``: pandas DataFrames and mappings of array-likes."""
    if is_pandas(data) and hasattr(data, "columns"):
        return {str(name): data[name] for name in data.columns}
    if isinstance(data, Mapping):
        return {str(name): col for name, col in data.items()}
    raise TypeError(
        f"expected a pandas DataFrame or a mapping of columns, got {type(data).__name__}"
    )


def column_length(col: Any) -> int:
    return len(col)


def infer_type(col: Any) -> str:
    """``numeric`` for integer and floating columns (booleans excluded), else ``categorical``.

    An object column (a list, an object array or Series) is numeric when all its
    non-missing values are ints or floats (not bools), and when it is entirely missing.

    >>> infer_type([1, 2.5, None]), infer_type(["a", None]), infer_type(np.array([True]))
    ('numeric', 'categorical', 'categorical')
    """
    if is_pandas(col):
        dtype = col.dtype
        kind = getattr(dtype, "kind", "O")
        if kind in "iuf":
            return NUMERIC
        if kind != "O" or str(dtype) in ("category", "string", "bool", "boolean"):
            return CATEGORICAL
        values: Iterable[Any] = col.tolist()
    else:
        arr = col if isinstance(col, np.ndarray) else np.asarray(col, dtype=object)
        if arr.dtype.kind in "iuf":
            return NUMERIC
        if arr.dtype.kind != "O":
            return CATEGORICAL
        values = arr.ravel().tolist()
    for v in values:
        if isinstance(v, (bool, np.bool_)):
            return CATEGORICAL
        if not isinstance(v, _NUMBER_TYPES) and not is_missing(v):
            return CATEGORICAL
    return NUMERIC


def to_float(col: Any) -> tuple[np.ndarray, int]:
    """A numeric column as float64 (NaN for missing and invalid values) and the invalid count.

    The fast path is one numpy conversion; only a column holding something numpy cannot
    convert (a non-numeric string, ``pandas.NA`` in an object column) is walked in Python.
    """
    if isinstance(col, np.ndarray) and col.dtype.kind in "iufb":
        return np.asarray(col, dtype=np.float64).ravel(), 0
    if is_pandas(col):
        kind = getattr(col.dtype, "kind", "O")
        if kind in "iufb":
            return col.to_numpy(dtype=np.float64, na_value=np.nan), 0
        col = col.to_numpy(dtype=object)
    try:
        with np.errstate(all="ignore"):
            return np.asarray(col, dtype=np.float64).ravel(), 0
    except (TypeError, ValueError):
        pass
    items = col.ravel().tolist() if isinstance(col, np.ndarray) else list(col)
    out = np.empty(len(items), dtype=np.float64)
    invalid = 0
    for i, v in enumerate(items):
        if is_missing(v):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            out[i] = np.nan
            invalid += 1
    return out, invalid


def numeric_quality(values: np.ndarray, invalid: int = 0) -> tuple[Quality, np.ndarray]:
    """Quality counts of a float64 column and its finite values (a view when all are)."""
    finite = np.isfinite(values)
    n = int(values.size)
    n_finite = int(np.count_nonzero(finite))
    if n_finite == n:
        return Quality(count=n), values
    posinf = int(np.count_nonzero(values == np.inf))
    neginf = int(np.count_nonzero(values == -np.inf))
    nan = n - n_finite - posinf - neginf
    quality = Quality(count=n, missing=nan - invalid, posinf=posinf, neginf=neginf, invalid=invalid)
    return quality, values[finite]


def category_key(value: Any) -> str:
    """The string a category value is counted under (see the module docstring).

    >>> [category_key(v) for v in ("x", True, 3, 3.0, 2.5, np.int64(7))]
    ['x', 'true', '3', '3', '2.5', '7']
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value)


@dataclass(frozen=True)
class CategoryCounts:
    """Counts of a categorical column by category key, plus its quality counts."""

    counts: dict[str, int]
    quality: Quality


def _raw_counts(col: Any) -> tuple[list[Any], list[int]]:
    """Distinct raw values and their counts, by the fastest route for the input's type."""
    if is_pandas(col):
        if str(col.dtype) == "category":
            codes = np.asarray(col.cat.codes.to_numpy(), dtype=np.int64)
            cats = list(col.cat.categories)
            counts = np.bincount(codes + 1, minlength=len(cats) + 1)
            return [None, *cats], [int(c) for c in counts]
        codes, uniques = sys.modules["pandas"].factorize(col)  # missing values: code -1
        counts = np.bincount(np.asarray(codes) + 1, minlength=len(uniques) + 1)
        return [None, *list(uniques)], counts.tolist()
    if isinstance(col, np.ndarray):
        if col.dtype.kind in "iufb":
            # numbers counted as categories: np.unique (NaNs collapse into one key, whereas
            # tolist() would make each NaN a distinct float object for Counter)
            uniq, cnt = np.unique(col.ravel(), return_counts=True, equal_nan=True)
            return uniq.tolist(), cnt.tolist()
        col = col.ravel()
    pandas = sys.modules.get("pandas")  # faster than Counter, not a dependency: if loaded
    if pandas is not None and len(col) >= 10_000:
        codes, uniques = pandas.factorize(np.asarray(col, dtype=object))
        counts = np.bincount(codes + 1, minlength=len(uniques) + 1)
        return [None, *uniques.tolist()], counts.tolist()
    counter = Counter(col.tolist() if isinstance(col, np.ndarray) else col)
    return list(counter.keys()), list(counter.values())


def count_categories(col: Any) -> CategoryCounts:
    """Category counts of a column: one hash pass (``Counter`` or pandas), then per distinct value.

    Only the distinct values are classified in Python, so the cost is one C-level pass
    over the rows whatever the number of rows.
    """
    keys, counts = _raw_counts(col)
    if all(type(k) is str for k in keys):  # the common case: nothing to classify
        return CategoryCounts(dict(zip(keys, counts, strict=True)), Quality(count=sum(counts)))
    out: dict[str, int] = {}
    total = missing = posinf = neginf = 0
    for value, c in zip(keys, counts, strict=True):
        if c == 0:
            continue
        total += c
        if is_missing(value):
            missing += c
        elif isinstance(value, (float, np.floating)) and math.isinf(value):
            if value > 0:
                posinf += c
            else:
                neginf += c
        else:
            key = category_key(value)
            out[key] = out.get(key, 0) + c
    return CategoryCounts(out, Quality(count=total, missing=missing, posinf=posinf, neginf=neginf))


def ordered_categories(counts: Mapping[str, int]) -> list[str]:
    """Categories by decreasing count, then name: the one order used everywhere.

    Raw comparisons and profiles lay their tables out in this order, so the same counts
    give bit-identical sums.
    """
    return sorted(counts, key=lambda k: (-counts[k], k))
