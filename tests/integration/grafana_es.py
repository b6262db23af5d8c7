"""The search Grafana's Elasticsearch datasource (11.x) sends for a dashboard query, and
what an answer must hold for its panel to draw something.

Grafana puts the panel's Lucene, its template variables replaced, in a ``query_string``
filter beside a range filter on the time field (``epoch_millis``); a raw-data query asks
for ``size`` documents, newest first; otherwise the bucket aggregations are nested in
order, the metrics inside the innermost one. Variables are replaced as Grafana's
``lucene`` format does: one text value escaped, a choice of a multi-value variable as
``("a" OR "b")``, a custom All value as it is. Only what the mlwatch dashboards use is
translated; anything else raises, so a new panel cannot pass untested.
"""

from __future__ import annotations

import re
from typing import Any

from mlwatch.grafana.build import EsQuery

_SPECIAL = re.compile(r'([!*+\-=<>\s&|()\[\]{}^~?:\\/"])')
_SINGLE = ("avg", "max", "min", "sum")


def lucene_escape(value: str) -> str:
    return _SPECIAL.sub(r"\\\1", value)


def lucene_value(value: str | list[str]) -> str:
    """A variable's value in Grafana's ``lucene`` format."""
    if isinstance(value, str):
        return lucene_escape(value)
    return "(" + " OR ".join(f'"{lucene_escape(v)}"' for v in value) + ")"


def interpolate(query: str, values: dict[str, str]) -> str:
    """``query`` with each ``$name`` replaced by ``values[name]`` (already formatted)."""
    return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], query)


def search(q: EsQuery, values: dict[str, str], start: int, end: int, interval: str) -> Any:
    """The ``_search`` body Grafana sends for ``q`` over ``[start, end]`` (epoch ms)."""
    window = {"gte": start, "lte": end, "format": "epoch_millis"}
    lucene = {"analyze_wildcard": True, "query": interpolate(q.query, values)}
    body: dict[str, Any] = {
        "size": 0,
        "query": {
            "bool": {"filter": [{"range": {q.time_field: window}}, {"query_string": lucene}]}
        },
    }
    raw = [m for m in q.metrics if m["type"] == "raw_data"]
    if raw:
        body["size"] = int(raw[0]["settings"]["size"])
        body["sort"] = [
            {q.time_field: {"order": "desc", "unmapped_type": "boolean"}},
            {"_doc": {"order": "desc"}},
        ]
        return body
    aggs = {m["id"]: _metric(m) for m in q.metrics if m["type"] != "count"}
    for bucket in reversed(q.bucket_aggs):
        agg = _bucket(bucket, start, end, interval)
        if aggs:
            agg["aggs"] = aggs
        aggs = {bucket["id"]: agg}
    body["aggs"] = aggs
    return body


def _metric(m: dict[str, Any]) -> dict[str, Any]:
    if m["type"] == "percentiles":
        percents = [float(p) for p in m["settings"]["percents"]]
        return {"percentiles": {"field": m["field"], "percents": percents}}
    if m["type"] in _SINGLE:
        return {m["type"]: {"field": m["field"]}}
    raise NotImplementedError(f"metric {m['type']}")


def _bucket(b: dict[str, Any], start: int, end: int, interval: str) -> dict[str, Any]:
    settings = b.get("settings", {})
    if b["type"] == "date_histogram":
        step = settings.get("interval", "auto")
        return {
            "date_histogram": {
                "field": b["field"],
                "fixed_interval": interval if step == "auto" else step,
                "min_doc_count": int(settings.get("min_doc_count", 0)),
                "extended_bounds": {"min": start, "max": end},
                "format": "epoch_millis",
            }
        }
    if b["type"] == "terms":
        key = {"_count": "_count", "_term": "_key"}[settings.get("orderBy", "_term")]
        terms: dict[str, Any] = {
            "field": b["field"],
            "size": int(settings.get("size", 10)),
            "min_doc_count": int(settings.get("min_doc_count", 1)),
            "order": {key: settings.get("order", "desc")},
        }
        if "missing" in settings:
            terms["missing"] = settings["missing"]
        return {"terms": terms}
    raise NotImplementedError(f"bucket aggregation {b['type']}")


def check(q: EsQuery, answer: Any) -> None:
    """Fail unless ``answer`` has documents (raw data) or buckets with documents whose
    every metric has a value: what a panel needs to draw more than "No data"."""
    if any(m["type"] == "raw_data" for m in q.metrics):
        assert answer["hits"]["hits"], f"{q.dashboard} / {q.panel}: no documents"
        return
    level = [answer["aggregations"]]
    for bucket in q.bucket_aggs:
        level = [b for parent in level for b in parent[bucket["id"]]["buckets"]]
    live = [b for b in level if b["doc_count"] > 0]
    assert live, f"{q.dashboard} / {q.panel}: no bucket with documents"
    for m in q.metrics:
        if m["type"] == "count":
            continue
        for b in live:
            value = b[m["id"]].get("values", {"value": b[m["id"]].get("value")})
            assert None not in value.values(), f"{q.dashboard} / {q.panel}: {m['type']} empty"
