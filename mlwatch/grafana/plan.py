"""What ``mlwatch dashboards sync`` writes to Grafana: the dashboards of a build as plain
JSON, each model's in a folder of its own (``mlwatch-<model>``), mlwatch's health and the
fleet in the folder ``mlwatch``; the Grafana-managed alert rules beside them.

The JSON is exactly what ``mlwatch dashboards build`` writes to files, so Grafana holds the
same dashboards whether they were provisioned from files or synced through the API.
"""

from __future__ import annotations

import json
from typing import Any

from mlwatch.errors import ConfigError
from mlwatch.grafana.alert_rules import all_rules
from mlwatch.grafana.build import build_dashboards
from mlwatch.grafana.common import SHARED, Folder, Options, model_folders, uid
from mlwatch.grafana.render import dashboard_json
from mlwatch.grafana.sync import DEFAULT_MESSAGE, sync
from mlwatch.grafana.sync_report import SyncReport
from mlwatch.settings import Config

MODEL_KINDS = ("overview", "drift", "performance", "events")


def dashboards_by_folder(
    config: Config, options: Options
) -> dict[str | Folder, list[dict[str, Any]]]:
    """Every dashboard of ``config`` as Grafana JSON, grouped by the folder it belongs in."""
    owner = {uid(kind, m.name): m.name for m in config.models for kind in MODEL_KINDS}
    folders = model_folders([m.name for m in config.models])
    out: dict[str | Folder, list[dict[str, Any]]] = {}
    for board in build_dashboards(config, options).values():
        data = json.loads(dashboard_json(board))
        model = owner.get(data["uid"])
        folder = folders[model] if model else SHARED
        out.setdefault(folder, []).append(data)
    return out


def sync_config(
    config: Config,
    options: Options,
    *,
    url: str | None = None,
    force: bool = False,
    prune: bool = False,
    dry_run: bool = False,
    message: str | None = None,
) -> SyncReport:
    """Sync the dashboards of ``config`` to Grafana at ``url`` (default: ``grafana_url``)
    with the ``grafana_token`` setting."""
    target = url or config.grafana_url
    if not target:
        raise ConfigError("grafana_url", "no Grafana to sync to: pass --url or set grafana_url")
    if not config.grafana_token:
        raise ConfigError(
            "grafana_token",
            "no Grafana service-account token: set MLWATCH_GRAFANA_TOKEN or "
            "MLWATCH_GRAFANA_TOKEN_FILE",
        )
    return sync(
        dashboards_by_folder(config, options),
        url=target,
        token=config.grafana_token,
        force=force,
        prune=prune,
        dry_run=dry_run,
        message=message or DEFAULT_MESSAGE,
        alert_rules=all_rules(config, options),
    )
