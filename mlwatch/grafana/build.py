"""``mlwatch dashboards build``: every dashboard of a config, by file name, and every
PromQL expression in them.

Per model: an overview; drift and performance dashboards when the model has a monitoring
section (the scheduler makes those metrics); an events dashboard when the config has
``elasticsearch_url`` (the sidecar writes the events there). Then mlwatch's health and the
fleet. Panel ids are numbered here, in order, so the same config always gives the same
dashboards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models

from mlwatch.errors import ConfigError
from mlwatch.grafana.common import Options
from mlwatch.grafana.drift import drift
from mlwatch.grafana.events import events
from mlwatch.grafana.fleet import fleet
from mlwatch.grafana.health import health
from mlwatch.grafana.overview import overview
from mlwatch.grafana.performance import performance
from mlwatch.settings import Config

GRID_WIDTH = 24


@dataclass(frozen=True)
class PanelQuery:
    """One expression of one panel: what a test against a real Prometheus runs."""

    dashboard: str  # uid
    panel: str  # title
    expr: str


@dataclass(frozen=True)
class EsQuery:
    """One Elasticsearch query of one panel, as the dashboard stores it (Lucene with the
    template variables, the metrics and bucket aggregations as JSON): what a test against
    a real Elasticsearch turns into the search Grafana sends."""

    dashboard: str  # uid
    panel: str  # title
    query: str
    time_field: str
    metrics: tuple[dict[str, Any], ...]
    bucket_aggs: tuple[dict[str, Any], ...]


def build_dashboards(config: Config, options: Options) -> dict[str, models.Dashboard]:
    """Every dashboard of ``config`` by file name (``<uid>.json``), in the config's order;
    two models whose names give one uid are a configuration error."""
    boards: list[models.Dashboard] = []
    for spec in config.models:
        boards.append(overview(spec, options))
        if spec.monitoring is not None:
            boards += [drift(spec, options), performance(spec, options)]
        if config.elasticsearch_url:
            boards.append(events(spec, options))
    boards += [health(config, options), fleet(config, options)]
    out: dict[str, models.Dashboard] = {}
    for board in boards:
        name = f"{board.uid}.json"
        if name in out:
            raise ConfigError(
                "models", f"two models give the dashboard uid {board.uid!r}", source=config.source
            )
        out[name] = lay_out(board)
    return out


def lay_out(board: models.Dashboard) -> models.Dashboard:
    """Number the panels in order (Grafana needs unique ids; a fixed order keeps them
    stable) and place them left to right on the 24-column grid, a row title across the
    full width, a panel that does not fit on the next line. The SDK's own placement lets
    a full-width panel overflow a half-filled line."""
    x = y = line = 0
    for i, panel in enumerate(board.panels or [], start=1):
        panel.id_val = i
        pos = panel.grid_pos or models.GridPos()
        width = GRID_WIDTH if isinstance(panel, models.RowPanel) else pos.w
        if x + width > GRID_WIDTH or isinstance(panel, models.RowPanel):
            x, y, line = 0, y + line, 0
        panel.grid_pos = models.GridPos(h=pos.h, w=width, x=x, y=y)
        x, line = x + width, max(line, pos.h)
        if isinstance(panel, models.RowPanel):
            x, y, line = 0, y + pos.h, 0
    return board


def panel_queries(boards: dict[str, models.Dashboard]) -> list[PanelQuery]:
    """Every (dashboard, panel, expr) of ``boards``, rows skipped."""
    out = []
    for board in boards.values():
        for panel in board.panels or []:
            if not isinstance(panel, models.Panel):
                continue
            for target in panel.targets or []:
                expr = getattr(target, "expr", None)
                if expr:
                    out.append(PanelQuery(str(board.uid), str(panel.title), str(expr)))
    return out


def es_queries(boards: dict[str, models.Dashboard]) -> list[EsQuery]:
    """Every Elasticsearch query of ``boards`` (targets with a time field), rows skipped."""
    out = []
    for board in boards.values():
        for panel in board.panels or []:
            if not isinstance(panel, models.Panel):
                continue
            for target in panel.targets or []:
                if getattr(target, "time_field", None) is None:
                    continue
                data = json.loads(JSONEncoder().encode(target))
                out.append(
                    EsQuery(
                        str(board.uid),
                        str(panel.title),
                        data.get("query", ""),
                        data["timeField"],
                        tuple(data.get("metrics", ())),
                        tuple(data.get("bucketAggs", ())),
                    )
                )
    return out
