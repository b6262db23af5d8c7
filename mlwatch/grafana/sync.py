"""Keep Grafana's dashboards (and Grafana-managed alert rules) in step with the ones mlwatch
generates, through Grafana's HTTP API.

:func:`sync` takes plain dashboard JSON grouped by folder. Each folder is found or made by
uid; each dashboard is written by uid with ``POST /api/dashboards/db`` only when its content
changed, tagged ``mlwatch`` and ``mlwatch-hash:<hash of what was written>``. A dashboard
whose content in Grafana no longer matches its hash tag was edited by hand: it is reported
and left alone unless ``force``. Dashboards tagged ``mlwatch`` that are no longer generated
are deleted only with ``prune`` (a hand-edited one only with ``force`` too). ``dry_run``
only reads, and the report holds a unified diff per object it would write. See docs/grafana-sync.md.

Retrain triggers are marked on dashboards with
:func:`mlwatch.grafana.grafana_api.annotate`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mlwatch.errors import ConfigError
from mlwatch.grafana.common import Folder
from mlwatch.grafana.grafana_api import DEFAULT_TIMEOUT, Grafana, grafana_token
from mlwatch.grafana.sync_alerts import stamp_rules, sync_alert_rules
from mlwatch.grafana.sync_dashboards import ensure_folder, prune_dashboards, sync_dashboard
from mlwatch.grafana.sync_report import (
    HASH_TAG_PREFIX,
    MANAGED_TAG,
    SyncReport,
    content_hash,
)

__all__ = ["DEFAULT_MESSAGE", "Folder", "SyncReport", "stamped", "sync"]

DEFAULT_MESSAGE = "mlwatch: dashboards generated from the monitoring configuration"
_UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")


def stamped(dashboard: Mapping[str, Any]) -> dict[str, Any]:
    """``dashboard`` as mlwatch writes it: no id or version, tagged ``mlwatch`` and with
    the hash tag of its content."""
    out = copy.deepcopy(dict(dashboard))
    out.pop("id", None)
    out.pop("version", None)
    tags = {str(t) for t in out.get("tags") or () if not str(t).startswith(HASH_TAG_PREFIX)}
    out["tags"] = sorted(tags | {MANAGED_TAG})
    out["tags"].append(HASH_TAG_PREFIX + content_hash(out))
    return out


def _desired(
    dashboards_by_folder: Mapping[str | Folder, Sequence[Mapping[str, Any]]],
) -> dict[str, tuple[Folder, dict[str, Any]]]:
    out: dict[str, tuple[Folder, dict[str, Any]]] = {}
    titles: dict[str, str] = {}
    for key, dashboards in dashboards_by_folder.items():
        folder = key if isinstance(key, Folder) else Folder.named(key)
        if not _UID.match(folder.uid):
            raise ConfigError("folder", f"uid {folder.uid!r} is not 1-40 of [a-zA-Z0-9_-]")
        if titles.setdefault(folder.uid, folder.title) != folder.title:
            other = titles[folder.uid]
            raise ConfigError(
                "folder", f"{folder.title!r} and {other!r} share the uid {folder.uid!r}"
            )
        for dashboard in dashboards:
            uid = dashboard.get("uid")
            if not isinstance(uid, str) or not _UID.match(uid):
                raise ConfigError("dashboard", f"uid {uid!r} is not 1-40 of [a-zA-Z0-9_-]")
            if uid in out:
                raise ConfigError("dashboard", f"uid {uid!r} appears twice")
            if not str(dashboard.get("title") or "").strip():
                raise ConfigError("dashboard", f"{uid!r} has no title")
            out[uid] = (folder, stamped(dashboard))
    return out


def sync(
    dashboards_by_folder: Mapping[str | Folder, Sequence[Mapping[str, Any]]],
    *,
    url: str,
    token: str | None = None,
    force: bool = False,
    prune: bool = False,
    dry_run: bool = False,
    message: str = DEFAULT_MESSAGE,
    alert_rules: Sequence[Mapping[str, Any]] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> SyncReport:
    """Make Grafana at ``url`` hold these dashboards (and, unless ``alert_rules`` is None,
    these alert rules). Folders are keys: a :class:`Folder`, or a title (then
    ``Folder.named(title)``). ``token`` defaults to :func:`grafana_token`. ``message`` is the
    commit message of each dashboard version written. Raises ``ConfigError`` for bad input
    and ``DeliveryError`` when Grafana refuses or does not answer."""
    desired = _desired(dashboards_by_folder)
    if alert_rules is not None:
        stamp_rules(alert_rules)  # bad rules are refused before anything is written
    report = SyncReport(dry_run=dry_run)
    with Grafana(url, grafana_token() if token is None else token, timeout=timeout) as grafana:
        folders = {folder.uid: folder for folder, _ in desired.values()}
        for folder in sorted(folders.values(), key=lambda f: f.uid):
            ensure_folder(grafana, folder, report)
        for _, (folder, dashboard) in sorted(desired.items()):
            sync_dashboard(grafana, folder, dashboard, report, force=force, message=message)
        prune_dashboards(grafana, set(desired), report, prune=prune, force=force)
        if alert_rules is not None:
            sync_alert_rules(grafana, alert_rules, report, force=force, prune=prune)
    return report
