"""A stored profile as the columns a report draws: what a served model's feature
sections show, since the store keeps profiles and not the data.

Numeric features are drawn from the profile's reservoir (a uniform sample of the finite
values, sorted), categorical ones from their exact counts; data quality is the profile's.
The drift figures beside them stay the stored result's, so a sample can change a
picture, never a number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlwatch.stats.columns import NUMERIC
from mlwatch.stats.drift.prepared import PreparedColumn


def profile_columns(profile: Any) -> dict[str, PreparedColumn]:
    """``{feature: column}`` of a :class:`~mlwatch.stats.profile.DatasetProfile`."""
    out: dict[str, PreparedColumn] = {}
    for name, col in profile.columns.items():
        if col.type == NUMERIC:
            values = np.sort(np.asarray(col.reservoir.values, dtype=np.float64))
            out[name] = PreparedColumn(NUMERIC, col.quality, values=values)
        else:
            counts = {c: int(n) for c, n in zip(col.categories, col.counts, strict=True) if n}
            counts.update(col.extra)
            out[name] = PreparedColumn(col.type, col.quality, counts=counts)
    return out
