"""A :class:`~mlwatch.report.model.Report` as one self-contained HTML page.

Jinja2 with autoescaping on for everything: feature names, categories, versions and
trigger details are data from outside and end up as text, never as markup. The page
needs nothing from the network: the style sheet and the small filter script are
inline, the plots static SVG (:mod:`.svg`), and a Content-Security-Policy forbids any
fetch. The report's data model is embedded as JSON (``<script type="application/json"
id="mlwatch-report-data">``) for whoever wants the numbers behind the page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup

from mlwatch.report import svg
from mlwatch.report.model import Report

OPEN_FIRST = 10  # feature sections shown open; the rest open on a click
DATA_ID = "mlwatch-report-data"


def render(report: Report) -> str:
    """The HTML page of ``report``."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mlwatch.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = svg.fmt
    env.filters["pct"] = lambda x: "-" if x is None else f"{100 * x:.1f}%"
    env.globals.update(
        histogram_svg=svg.histogram_svg,
        category_svg=svg.category_svg,
        kpi_plots=kpi_plots,
        traffic_plots=traffic_plots,
        drift_plot=drift_plot,
    )
    template = env.get_template("report.html.j2")
    return template.render(
        report=report, data_json=embedded_json(report.to_dict()), open_first=OPEN_FIRST
    )


def embedded_json(data: Any) -> Markup:
    """JSON that is safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` escaped as
    ``\\u003c`` and so on, so a value holding ``</script>`` cannot end the element."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


def kpi_plots(
    rows: Sequence[Mapping[str, Any]], thresholds: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[tuple[str, str, Markup]]:
    """``(kpi, version, svg)`` for every KPI and version with a value in some window."""
    series: dict[tuple[str, str], list[svg._Point]] = {}
    for row in rows:
        for name, k in row["kpis"].items():
            point = (float(row["start_us"]), k["value"], k["lower"], k["upper"])
            series.setdefault((name, row["version"]), []).append(point)
    out = []
    for (name, version), points in sorted(series.items()):
        if all(p[1] is None for p in points):
            continue
        lines = [
            (f"{t['source']} ({t['direction']})", t["value"]) for t in thresholds.get(name, ())
        ]
        out.append((name, version, svg.series_svg(points, thresholds=lines, y_label=name)))
    return out


def traffic_plots(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, Markup]]:
    """Predictions, error ratio and latency per time bucket (all versions together)."""
    buckets: dict[int, dict[str, float]] = {}
    for row in rows:
        b = buckets.setdefault(
            int(row["start_us"]), {"count": 0, "errors": 0, "lat_sum": 0.0, "lat_max": 0.0}
        )
        b["count"] += row["count"]
        b["errors"] += row["errors"]
        b["lat_sum"] += row["latency_mean_ms"] * row["count"]
        b["lat_max"] = max(b["lat_max"], row["latency_max_ms"])
    times = sorted(buckets)
    count = [(float(t), buckets[t]["count"], None, None) for t in times]
    errors = [(float(t), buckets[t]["errors"] / buckets[t]["count"], None, None) for t in times]
    mean = [(float(t), _mean(buckets[t]), _mean(buckets[t]), buckets[t]["lat_max"]) for t in times]
    return [
        ("predictions", svg.series_svg(count, kind="bars", y_label="predictions")),
        ("error ratio", svg.series_svg(errors, y_label="error ratio")),
        ("latency (mean, max) ms", svg.series_svg(mean, y_label="ms")),
    ]


def drift_plot(rows: Sequence[Mapping[str, Any]], threshold: float | None) -> Markup:
    """The drift share of each window, with the dataset-drift threshold."""
    points = [(float(r["start_us"]), r["drift_share"], None, None) for r in rows]
    lines = [("dataset drift at", threshold)] if threshold is not None else []
    return svg.series_svg(points, thresholds=lines, y_label="drift share")


def _mean(bucket: Mapping[str, float]) -> float:
    return bucket["lat_sum"] / bucket["count"]
