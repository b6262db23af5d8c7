"""Window profiles from Elasticsearch aggregations: drift over billions of events.

With Elasticsearch as the store of record, the drift job does not pull rows: one search
per window returns, per feature,

- numeric: a ``range`` aggregation on the reference profile's fine edges (the same bins
  :class:`~mlwatch.stats.profile.NumericProfile` counts into, with open ends), and
  ``extended_stats`` (count, min, max, mean, variance);
- categorical: a ``terms`` aggregation bounded by the reference's category list plus
  ``top_k`` extras, the rest from ``sum_other_doc_count``; keys are normalised as the
  profile counts them (a category ``3`` stored as a number comes back as ``3.0``, a
  boolean as ``1``). Terms counts are exact on one shard; across shards and backing
  indices they are Elasticsearch's approximation (``shard_size`` is ten times the size);
- ``missing`` counts (a feature absent or null in an event that has features).

Those are exactly the counts a profile built from the raw rows holds, so PSI, JS,
Hellinger, chi-square and the other binned statistics equal the raw-data ones, and KS
and Wasserstein carry the same histogram bounds (a test checks both against the
embedded store's raw values). Anderson-Darling and Cramér-von Mises need raw values:
their reservoir is a random sample of at most ``sample`` documents (one bounded
``random_score`` search), and is empty with ``sample=0``. Non-finite values cannot be
in Elasticsearch (JSON has none), so ``posinf``/``neginf`` are 0 there; the sidecar
sends them as null, which counts as missing.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from mlwatch.elastic.documents import PREDICTIONS, stream_name
from mlwatch.stats.columns import category_key
from mlwatch.stats.profile import CategoricalProfile, DatasetProfile, NumericProfile
from mlwatch.times import format_ts
from mlwatch.wire import DEFAULT_ENVIRONMENT

FEATURE = "mlwatch.features."
ENVIRONMENT = "service.environment"


def _environment_filter(environment: str) -> dict[str, Any]:
    """The documents of one environment. A stream's namespace is the environment only by
    default: a namespace that is set may be shared by several environments, and a sidecar
    stores events that name another environment in its own stream. Documents indexed
    before environments have none: they are the default environment's, as in the store."""
    term = {"term": {ENVIRONMENT: environment}}
    if environment != DEFAULT_ENVIRONMENT:
        return term
    unset = {"bool": {"must_not": {"exists": {"field": ENVIRONMENT}}}}
    return {"bool": {"should": [term, unset], "minimum_should_match": 1}}


def _window_query(
    model: str,
    version: str | None,
    start_us: int,
    end_us: int,
    environment: str | None = None,
) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {"term": {"mlwatch.model": model}},
        {
            "range": {
                "@timestamp": {"gte": format_ts(start_us * 1000), "lt": format_ts(end_us * 1000)}
            }
        },
        {"exists": {"field": "mlwatch.features"}},
    ]
    if version is not None:
        filters.append({"term": {"mlwatch.version": version}})
    if environment is not None:
        filters.append(_environment_filter(environment))
    return {"bool": {"filter": filters}}


def _ranges(edges: np.ndarray) -> list[dict[str, float]]:
    """Bins of ``searchsorted(edges, x, side="right")``: ``[e_{i-1}, e_i)``, open at both ends."""
    e = edges.tolist()
    return [
        {"to": e[0]},
        *({"from": a, "to": b} for a, b in itertools.pairwise(e)),
        {"from": e[-1]},
    ]


def _aggs(reference: DatasetProfile) -> dict[str, Any]:
    aggs: dict[str, Any] = {}
    for i, (name, col) in enumerate(reference.columns.items()):
        field = FEATURE + name
        aggs[f"m{i}"] = {"missing": {"field": field}}
        if isinstance(col, NumericProfile):
            aggs[f"r{i}"] = {"range": {"field": field, "ranges": _ranges(col.edges)}}
            aggs[f"s{i}"] = {"extended_stats": {"field": field}}
        else:
            size = len(col.categories) + col.top_k
            aggs[f"t{i}"] = {
                "terms": {"field": field, "size": size, "shard_size": max(10 * size, 1000)}
            }
    return aggs


def versions(
    client: Any,
    namespace: str,
    model: str,
    start_us: int,
    end_us: int,
    environment: str | None = None,
) -> list[str]:
    """Versions of a model with events in a window (of one environment, when given)."""
    resp = client.search(
        index=stream_name(PREDICTIONS, namespace),
        size=0,
        query=_window_query(model, None, start_us, end_us, environment),
        aggs={"v": {"terms": {"field": "mlwatch.version", "size": 1000}}},
    )
    return sorted(b["key"] for b in resp["aggregations"]["v"]["buckets"])


def window_profile(
    client: Any,
    reference: DatasetProfile,
    *,
    namespace: str,
    model: str,
    version: str | None,
    start_us: int,
    end_us: int,
    sample: int = 2000,
    seed: int | None = None,
    environment: str | None = None,
) -> DatasetProfile:
    """The profile of a window of served events (of one environment, when given),
    computed by Elasticsearch."""
    index = stream_name(PREDICTIONS, namespace)
    query = _window_query(model, version, start_us, end_us, environment)
    resp = client.search(
        index=index, size=0, query=query, aggs=_aggs(reference), track_total_hits=True
    )
    rows = int(resp["hits"]["total"]["value"])
    aggs = resp["aggregations"]
    current = reference.new_window(seed=seed)
    current.rows = rows
    for i, col in enumerate(current.columns.values()):
        missing = int(aggs[f"m{i}"]["doc_count"])
        if isinstance(col, NumericProfile):
            _fill_numeric(col, aggs[f"r{i}"]["buckets"], aggs[f"s{i}"], missing)
        else:
            assert isinstance(col, CategoricalProfile)
            terms = aggs[f"t{i}"]
            col.count += rows
            col.missing += missing
            col._add_counts({_category(b): int(b["doc_count"]) for b in terms["buckets"]})
            col.extra_other += int(terms.get("sum_other_doc_count", 0))
    if sample > 0 and rows:
        _fill_reservoirs(client, index, query, current, sample, seed)
    return current


def _category(bucket: dict[str, Any]) -> str:
    """A terms bucket's key as the profile counts it: ``true``/``false`` for booleans (ES
    keys them 1/0), ``3`` for a whole number in a double field."""
    if bucket.get("key_as_string") in ("true", "false") and bucket["key"] in (0, 1):
        return str(bucket["key_as_string"])
    return category_key(bucket["key"])


def _fill_numeric(
    col: NumericProfile, buckets: list[dict[str, Any]], stats: dict[str, Any], missing: int
) -> None:
    counts = np.array([int(b["doc_count"]) for b in buckets], dtype=np.int64)
    if counts.size != col.counts.size:
        raise ValueError(
            f"range aggregation returned {counts.size} bins for {col.counts.size} edges"
        )
    n = int(stats["count"])
    col.counts = counts
    col.count = n + missing
    col.missing = missing
    col.n = n
    if n:
        col.mean = float(stats["avg"])
        col.m2 = max(0.0, float(stats["variance_population"]) * n)
        col.min, col.max = float(stats["min"]), float(stats["max"])


def _fill_reservoirs(
    client: Any,
    index: str,
    query: dict[str, Any],
    profile: DatasetProfile,
    sample: int,
    seed: int | None,
) -> None:
    """A uniform random sample of the window's documents for the sample-based tests."""
    numeric = {
        name: col for name, col in profile.columns.items() if isinstance(col, NumericProfile)
    }
    if not numeric:
        return
    resp = client.search(
        index=index,
        size=min(sample, 10_000),
        track_total_hits=False,
        source=[FEATURE + n for n in numeric],
        query={
            "function_score": {
                "query": query,
                "boost_mode": "replace",
                "random_score": {
                    "seed": seed
                    if seed is not None
                    else int(np.random.default_rng().integers(1 << 31)),
                    "field": "_seq_no",
                },
            }
        },
    )
    hits = [h["_source"].get("mlwatch", {}).get("features", {}) for h in resp["hits"]["hits"]]
    rng = np.random.default_rng(seed)
    for name, col in numeric.items():
        values = np.array(
            [h.get(name) for h in hits if isinstance(h.get(name), (int, float))], dtype=np.float64
        )
        if values.size:
            col.reservoir.add(values, rng.random(values.size))
        # it stands for all n values of the window: "complete" only if it holds them all
        col.reservoir.seen = max(col.reservoir.seen, col.n)
