"""The panels of the events dashboard: failed calls over time and as documents, latency
percentiles from the documents, and the slow calls; each says what it shows and what to do,
and links to the runbook of the alert that watches the same thing and to Kibana."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as styles
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import elasticsearch as esq
from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.elasticsearch import TermsOrder

from mlwatch.grafana import es
from mlwatch.grafana.common import Options
from mlwatch.grafana.panels import runbook, thresholds

#: The saved search "mlwatch — failed predictions" of exporters/kibana/mlwatch.ndjson.
KIBANA_SEARCH = "mlwatch-failed-predictions"
FAILED = "event.outcome:failure"
#: The columns of a document table, in order.
COLUMNS = (
    "@timestamp",
    "mlwatch.version",
    "error.type",
    "mlwatch.latency_ms",
    "http.request.id",
    "trace.id",
    "event.id",
    "host.name",
)


def kibana(options: Options, *, time: bool = True) -> db.DashboardLink:
    """The saved search of failed predictions in Kibana's Discover; from a panel, over the
    dashboard's time range."""
    url = f"{options.kibana_url.rstrip('/')}/app/discover#/view/{KIBANA_SEARCH}"
    if time:
        url += "?_g=(time:(from:'${__from:date:iso}',to:'${__to:date:iso}'))"
    link = db.DashboardLink("Kibana: failed predictions").url(url).target_blank(True)
    return link.type(models.DashboardLinkType.LINK).icon("external link")


def failures(options: Options) -> timeseries.Panel:
    """Failed calls over time, a line per exception type."""
    by_type = esq.Terms().id("2").field("error.type")
    by_type.settings(
        esq.ElasticsearchTermsSettings()
        .size("10")
        .order(TermsOrder.DESC)
        .order_by("_count")
        .min_doc_count("1")
    )
    return (
        _series("Failed predictions by error type", "short")
        .description(
            "Failed calls per interval, stacked, a line per exception type (error.type, the "
            "ten most frequent). A new type after a deploy points at the new version: see "
            "the versions in the table beside, and roll back if only the new one fails. "
            "The error ratio and its alert are on the overview."
        )
        .targets([es.target(FAILED, [esq.Count().id("1")], [by_type, es.over_time()])])
        .fill_opacity(10)
        .stacking(styles.StackingConfig().mode(common.StackingMode.NORMAL))
        .links([runbook(options, "MlwatchHighErrorRatio"), kibana(options)])
    )


def latest_errors(options: Options) -> table.Panel:
    """The newest failed calls, one row each."""
    return _documents(
        "Latest errors",
        "The 100 newest failed calls: when, which version, the exception type, how long "
        "it took, and the ids that find it elsewhere (http.request.id joins its "
        "ground truth, trace.id its trace). Many rows of one type and version: that "
        "version breaks on some inputs; open the saved search in Kibana for the features.",
        FAILED,
        "@timestamp",
    ).links([runbook(options, "MlwatchHighErrorRatio"), kibana(options)])


def latency(slow: float, options: Options) -> timeseries.Panel:
    """Latency percentiles computed from the documents."""
    percents = esq.ElasticsearchPercentilesSettings().percents(["50", "95", "99"])
    metric = esq.Percentiles().id("1").field("mlwatch.latency_ms").settings(percents)
    return (
        _series("Latency percentiles from events", "ms")
        .description(
            "p50, p95 and p99 of mlwatch.latency_ms per interval, failed calls included, "
            "from the documents rather than the histogram the overview draws, so no bucket "
            "bounds blur them. Dashed: where slow starts (the slow_ms variable, from the "
            "latency alert). A p99 above it for long: see the slow calls beside."
        )
        .targets([es.target("", [metric], [es.over_time()])])
        .thresholds(thresholds((None, "green"), (slow, "red")))
        .thresholds_style(
            styles.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
        .links([runbook(options, "MlwatchHighLatency")])
    )


def slowest(options: Options) -> table.Panel:
    """The newest slow calls, slowest first."""
    return _documents(
        "Slow requests",
        "The 100 newest calls that took at least slow_ms, slowest first. One version or "
        "one host in most rows: look there first (a new version, a busy node); calls slow "
        "across the board point at a dependency. Raise slow_ms to see only the worst.",
        "mlwatch.latency_ms:>=$slow_ms",
        "mlwatch.latency_ms",
    ).links([runbook(options, "MlwatchHighLatency")])


def _series(title: str, unit: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .datasource(es.DATASOURCE)
        .unit(unit)
        .height(10)
        .span(12)
        .line_width(1)
    )


def _documents(title: str, description: str, query: str, sort: str) -> table.Panel:
    """The newest 100 documents matching ``query`` in :data:`COLUMNS`, sorted by ``sort``
    (descending)."""
    names = {"include": {"names": list(COLUMNS)}}
    order = {"indexByName": {name: i for i, name in enumerate(COLUMNS)}}
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(es.DATASOURCE)
        .targets([es.target(query, [es.raw(100)])])
        .with_transformation(
            models.DataTransformerConfig(id_val="filterFieldsByName", options=names)
        )
        .with_transformation(models.DataTransformerConfig(id_val="organize", options=order))
        .sort_by([styles.TableSortByFieldState().display_name(sort).desc(True)])
        .height(10)
        .span(12)
    )
