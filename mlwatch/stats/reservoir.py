"""A mergeable uniform sample of a numeric feature: the bottom-k reservoir of a profile.

Each row gets a uniform random key and the reservoir keeps the values with the
``capacity`` smallest keys (2,000 by default). That is a uniform sample without
replacement, and merging two reservoirs (keep the smallest keys of both) gives exactly a
sample of the union: the mergeable form of reservoir sampling, weighted by how much each
side saw. While a reservoir holds every value it saw (``complete``), the statistics that
need values (Anderson-Darling, Cramér-von Mises, exact KS) are computed from it exactly.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

DEFAULT_RESERVOIR = 2000


def _pack(arr: np.ndarray) -> str:
    """float64 array -> base64 of its little-endian bytes (exact, half the size of decimal)."""
    return base64.b64encode(np.ascontiguousarray(arr, dtype="<f8").tobytes()).decode("ascii")


def _unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8").astype(np.float64)


class Reservoir:
    """A bottom-k sample: the ``capacity`` values with the smallest random keys.

    Uniform without replacement; :meth:`merge` keeps the smallest keys of both sides,
    which is exactly the sample of the union. ``seen`` counts the values offered.

    Cheap per batch: a batch contributes only its values whose key is below the current
    threshold (the largest kept key — after n values, about ``capacity / n`` of them),
    and those are buffered; the buffer is cut back to the ``capacity`` smallest keys
    when it reaches half the capacity, or when the sample is read. The result does not
    depend on when that happens: it is always the bottom-k of every key offered. The
    kept values are ordered by key, so equal samples serialise identically.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"reservoir: capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self._values = np.empty(0, dtype=np.float64)
        self._keys = np.empty(0, dtype=np.float64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0
        self._threshold = 1.0  # keys >= this cannot enter (1.0 while not full)
        self.seen = 0

    def _compact(self) -> None:
        if not self._pending:
            return
        values = np.concatenate([self._values, *(v for v, _ in self._pending)])
        keys = np.concatenate([self._keys, *(k for _, k in self._pending)])
        self._pending, self._pending_size = [], 0
        if keys.size > self.capacity:
            idx = np.argpartition(keys, self.capacity - 1)[: self.capacity]
            values, keys = values[idx], keys[idx]
        order = np.argsort(keys, kind="stable")
        self._values, self._keys = values[order], keys[order]
        if self._keys.size >= self.capacity and self.capacity:
            self._threshold = float(self._keys[-1])

    @property
    def values(self) -> np.ndarray:
        """The sampled values, by increasing key."""
        self._compact()
        return self._values

    @property
    def keys(self) -> np.ndarray:
        self._compact()
        return self._keys

    @property
    def complete(self) -> bool:
        """True while the reservoir holds every value it was offered."""
        return self.seen == self.values.size

    def add(self, values: np.ndarray, keys: np.ndarray) -> None:
        self.seen += int(values.size)
        if self.capacity == 0 or values.size == 0:
            return
        if self._threshold < 1.0:
            take = keys < self._threshold  # only these can enter: usually very few
            if not take.any():
                return
            values, keys = values[take], keys[take]
        self._pending.append((values.copy(), keys.copy()))
        self._pending_size += int(values.size)
        if self._pending_size >= max(self.capacity // 2, 1) or self._threshold == 1.0:
            self._compact()

    def merge(self, other: Reservoir) -> Reservoir:
        out = Reservoir(min(self.capacity, other.capacity))
        out.seen = self.seen + other.seen
        out._pending = [(self.values, self.keys), (other.values, other.keys)]
        out._compact()
        return out

    def sorted(self) -> np.ndarray:
        return np.sort(self.values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "seen": self.seen,
            "values": _pack(self.values),
            "keys": _pack(self.keys),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reservoir:
        r = cls(int(d["capacity"]))
        values, keys = _unpack(d["values"]), _unpack(d["keys"])
        if values.size != keys.size or values.size > r.capacity:
            raise ValueError("reservoir: values and keys do not match the capacity")
        r._pending = [(values, keys)]
        r._compact()
        r.seen = int(d["seen"])
        return r
