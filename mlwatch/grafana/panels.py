"""The few panel shapes the dashboards are made of: a time series, a stat and a table, each
with a description that says what a line means and what to do, and a link to the runbook
of the alert that watches the same thing.

Sizes are in Grafana's grid (24 columns); the dashboard builder lays panels out left to
right, top to bottom, in the order they are added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as styles
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from mlwatch.grafana.common import DATASOURCE, Options

#: What a dashboard takes as a panel: any of the SDK's panel builders.
PanelBuilder = Builder[models.Panel]


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel and how its series are named."""

    expr: str
    legend: str = ""


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds: ``(None, "green")`` is the base, then each value and its colour."""
    return (
        db.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=color) for value, color in steps])
    )


def runbook(options: Options, alert: str) -> db.DashboardLink:
    """The section of alerts/runbooks.md on ``alert``: what the panel's alert means and
    what to do about it."""
    return (
        db.DashboardLink(f"Runbook: {alert}")
        .type(models.DashboardLinkType.LINK)
        .url(f"{options.runbook_url}#{alert.lower()}")
        .target_blank(True)
    )


def _targets(queries: Sequence[Query], instant: bool) -> list[prometheus.Dataquery]:
    out = []
    for i, q in enumerate(queries):
        target = prometheus.Dataquery().expr(q.expr).ref_id(chr(ord("A") + i))
        if q.legend:
            target.legend_format(q.legend)
        out.append(target.instant() if instant else target.range())
    return out


def graph(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    unit: str,
    steps: db.ThresholdsConfig | None = None,
    links: Sequence[db.DashboardLink] = (),
    width: int = 12,
    stack: bool = False,
) -> timeseries.Panel:
    """A time series; with ``steps``, the thresholds are drawn as dashed lines."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets(queries, instant=False)))
        .unit(unit)
        .height(8)
        .span(width)
        .line_width(1)
        .fill_opacity(10 if stack else 0)
        .links(list(links))
    )
    if steps is not None:
        panel.thresholds(steps).thresholds_style(
            styles.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
    if stack:
        panel.stacking(styles.StackingConfig().mode(common.StackingMode.NORMAL))
    return panel


def single(
    title: str,
    description: str,
    query: Query,
    *,
    unit: str,
    steps: db.ThresholdsConfig,
    links: Sequence[db.DashboardLink] = (),
    width: int = 6,
) -> stat.Panel:
    """One figure per series (the newest value), coloured by ``steps``."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets([query], instant=True)))
        .unit(unit)
        .thresholds(steps)
        .reduce_options(styles.ReduceDataOptions().calcs(["lastNotNull"]))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .height(5)
        .span(width)
        .links(list(links))
    )


def rows(
    title: str,
    description: str,
    query: Query,
    *,
    hide: Sequence[str] = ("Time",),
    links: Sequence[db.DashboardLink] = (),
    width: int = 12,
) -> table.Panel:
    """The series of an instant query as table rows, one column per label; ``hide`` leaves
    columns out (the timestamp, by default)."""
    target = _targets([query], instant=True)[0].format(PromQueryFormat.TABLE)
    exclude = {name: True for name in hide}
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets([target])
        .with_transformation(
            models.DataTransformerConfig(id_val="organize", options={"excludeByName": exclude})
        )
        .height(8)
        .span(width)
        .links(list(links))
    )
