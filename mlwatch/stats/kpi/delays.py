"""How long ground truth takes: quantiles of the delay from a prediction to its label.

KPIs describe the past by as much as the labels lag; a delay that grows means the KPIs
(and the alerts on them) speak later, and a labelling pipeline may be stalling.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

QUANTILES = (0.5, 0.9, 0.99)


def delay_quantiles(delays_us: Iterable[int]) -> dict[str, float]:
    """Quantiles of ``delays_us`` in seconds, keyed as Prometheus writes them; empty for
    no delays.

    >>> delay_quantiles([1_000_000, 2_000_000, 3_000_000])
    {'0.5': 2.0, '0.9': 2.8, '0.99': 2.98}
    >>> delay_quantiles([])
    {}
    """
    values = np.fromiter(delays_us, dtype=np.float64)
    if values.size == 0:
        return {}
    found = np.quantile(values / 1e6, QUANTILES)
    return {str(q): round(float(v), 6) for q, v in zip(QUANTILES, found, strict=True)}
