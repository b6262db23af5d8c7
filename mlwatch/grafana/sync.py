"""Keep Grafana's dashboards (and Grafana-managed alert rules) in step with the ones mlwatch
generates, through Grafana's HTTP API.

:func:`sync` takes plain dashboard JSON grouped by folder. Each folder is found or made by
uid; each dashboard is written by uid with ``POST /api/dashboards/db`` only when its content
changed, tagged ``mlwatch`` and ``mlwatch-hash:<hash of what was written>``. A dashboard
whose content in Grafana no longer matches its hash tag was edited by hand: it is reported
and left alone unless ``force``. Dashboards tagged ``mlwatch`` that are no longer generated
are deleted only with ``prune``. ``dry_run`` reads and writes nothing, and the report holds
a unified diff per object it would write. See docs/grafana-sync.md.

Retrain triggers are marked on dashboards with
:func:`mlwatch.grafana.grafana_api.annotate`.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlwatch.errors import ConfigError
from mlwatch.grafana.grafana_api import DEFAULT_TIMEOUT, Grafana, Refusal, grafana_token
from mlwatch.grafana.sync_alerts import stamp_rules, sync_alert_rules
from mlwatch.grafana.sync_report import (
    HASH_TAG_PREFIX,
    MANAGED_TAG,
    SyncReport,
    content_hash,
    hash_tag,
    unified_diff,
)

logger = logging.getLogger("mlwatch.grafana")

DEFAULT_MESSAGE = "mlwatch: dashboards generated from the monitoring configuration"
_UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")
_SEARCH_PAGE = 1000


@dataclass(frozen=True)
class Folder:
    """A Grafana folder mlwatch writes into (one per model or team)."""

    uid: str
    title: str

    @classmethod
    def named(cls, title: str) -> Folder:
        """The folder titled ``title``, its uid ``mlwatch-<slug>``:

        >>> Folder.named("Fraud team")
        Folder(uid='mlwatch-fraud-team', title='Fraud team')
        """
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "folder"
        return cls(f"mlwatch-{slug}"[:40].rstrip("-"), title)


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
    for key, dashboards in dashboards_by_folder.items():
        folder = key if isinstance(key, Folder) else Folder.named(key)
        if not _UID.match(folder.uid):
            raise ConfigError("folder", f"uid {folder.uid!r} is not 1-40 of [a-zA-Z0-9_-]")
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
            _ensure_folder(grafana, folder, report)
        for _, (folder, dashboard) in sorted(desired.items()):
            _sync_dashboard(grafana, folder, dashboard, report, force=force, message=message)
        _prune_dashboards(grafana, set(desired), report, prune=prune)
        if alert_rules is not None:
            sync_alert_rules(grafana, alert_rules, report, force=force, prune=prune)
    return report


def _ensure_folder(grafana: Grafana, folder: Folder, report: SyncReport) -> None:
    what = f"folder {folder.uid!r}"
    found = grafana.call(what, grafana.api.folder.get_folder, folder.uid, allow=(404,))
    if not isinstance(found, Refusal):
        return
    if not report.dry_run:
        grafana.call(what, grafana.api.folder.create_folder, folder.title, folder.uid)
        logger.info("created Grafana folder %r (%s)", folder.title, folder.uid)
    report.add("folder", folder.uid, "create", folder.title)


def _sync_dashboard(
    grafana: Grafana,
    folder: Folder,
    dashboard: dict[str, Any],
    report: SyncReport,
    *,
    force: bool,
    message: str,
) -> None:
    uid = dashboard["uid"]
    what = f"dashboard {uid!r}"
    found = grafana.call(what, grafana.api.dashboard.get_dashboard, uid, allow=(404,))
    if isinstance(found, Refusal):
        _write(grafana, folder, dashboard, None, report, force=False, message=message)
        return
    stored, meta = found["dashboard"], found.get("meta", {})
    recorded = hash_tag(stored)
    if recorded is None:
        edit = "in Grafana without mlwatch's hash tag: made by hand or by another tool"
    elif content_hash(stored) != recorded:
        edit = (
            f"edited in Grafana since mlwatch wrote it; Grafana has version {meta.get('version')}"
        )
    else:
        edit = ""
    same_place = meta.get("folderUid", "") == folder.uid
    if not edit and recorded == hash_tag(dashboard) and same_place:
        report.add("dashboard", uid, "unchanged", f"version {meta.get('version')}")
        return
    if edit and not force:
        logger.warning("Grafana dashboard %r was %s; not overwritten (force overwrites)", uid, edit)
        report.add("dashboard", uid, "hand-edited", edit, unified_diff(uid, stored, dashboard))
        return
    _write(grafana, folder, dashboard, (stored, meta), report, force=force, message=message)


def _write(
    grafana: Grafana,
    folder: Folder,
    dashboard: dict[str, Any],
    existing: tuple[dict[str, Any], dict[str, Any]] | None,
    report: SyncReport,
    *,
    force: bool,
    message: str,
) -> None:
    uid = dashboard["uid"]
    action = "create" if existing is None else "update"
    before = None if existing is None else existing[0]
    if report.dry_run:
        report.add("dashboard", uid, action, folder.uid, unified_diff(uid, before, dashboard))
        return
    body = dict(dashboard)
    if existing is not None:  # optimistic locking: a save in between makes Grafana answer 412
        body["version"] = existing[1].get("version", existing[0].get("version"))
    payload = {"dashboard": body, "folderUid": folder.uid, "message": message, "overwrite": force}
    what = f"dashboard {uid!r}"
    answer = grafana.call(what, grafana.api.dashboard.update_dashboard, payload, allow=(412,))
    if isinstance(answer, Refusal) and answer.status_word == "version-mismatch":
        report.add("dashboard", uid, "hand-edited", "saved in Grafana while mlwatch was syncing")
        return
    if isinstance(answer, Refusal):
        raise grafana.error(what, answer)
    logger.info("%sd Grafana dashboard %r (version %s)", action, uid, answer.get("version"))
    report.add("dashboard", uid, action, f"version {answer.get('version')}")


def _prune_dashboards(grafana: Grafana, keep: set[str], report: SyncReport, *, prune: bool) -> None:
    found: list[Mapping[str, Any]] = []
    page = 1
    while True:
        hits = grafana.call(
            f"the dashboards tagged {MANAGED_TAG!r}",
            grafana.api.search.search_dashboards,
            tag=MANAGED_TAG,
            type_="dash-db",
            limit=_SEARCH_PAGE,
            page=page,
        )
        found.extend(hits)
        if len(hits) < _SEARCH_PAGE:
            break
        page += 1
    for hit in found:
        uid = str(hit.get("uid"))
        if uid in keep:
            continue
        if not prune:
            report.add("dashboard", uid, "stale", "no longer generated; prune deletes it")
            continue
        if not report.dry_run:
            grafana.call(f"dashboard {uid!r}", grafana.api.dashboard.delete_dashboard, uid)
            logger.info("deleted Grafana dashboard %r (no longer generated)", uid)
        report.add("dashboard", uid, "delete", str(hit.get("title", "")))
