"""Folders and dashboards, one at a time, for :func:`mlwatch.grafana.sync.sync`: find or make
a folder; read a dashboard, decide (unchanged, hand-edited, create, update) and write it;
find the dashboards mlwatch wrote that are no longer generated and delete them with prune.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mlwatch.grafana.common import Folder
from mlwatch.grafana.grafana_api import Grafana, Refusal
from mlwatch.grafana.sync_report import (
    MANAGED_TAG,
    SyncReport,
    content_hash,
    hash_tag,
    unified_diff,
)

logger = logging.getLogger("mlwatch.grafana")

_SEARCH_PAGE = 1000


def ensure_folder(grafana: Grafana, folder: Folder, report: SyncReport) -> None:
    what = f"folder {folder.uid!r}"
    found = grafana.call(what, grafana.api.folder.get_folder, folder.uid, allow=(404,))
    if not isinstance(found, Refusal):
        return
    if not report.dry_run:
        grafana.call(what, grafana.api.folder.create_folder, folder.title, folder.uid)
        logger.info("created Grafana folder %r (%s)", folder.title, folder.uid)
    report.add("folder", folder.uid, "create", folder.title)


def sync_dashboard(
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
    edit = _hand_edit(stored, meta)
    same_place = meta.get("folderUid", "") == folder.uid
    if not edit and hash_tag(stored) == hash_tag(dashboard) and same_place:
        report.add("dashboard", uid, "unchanged", f"version {meta.get('version')}")
        return
    if edit and not force:
        logger.warning("Grafana dashboard %r was %s; not overwritten (force overwrites)", uid, edit)
        report.add("dashboard", uid, "hand-edited", edit, unified_diff(uid, stored, dashboard))
        return
    _write(grafana, folder, dashboard, (stored, meta), report, force=force, message=message)


def _hand_edit(stored: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """Why Grafana's copy is not what mlwatch wrote, or "" when it is."""
    recorded = hash_tag(stored)
    if recorded is None:
        return "in Grafana without mlwatch's hash tag: made by hand or by another tool"
    if content_hash(stored) != recorded:
        version = meta.get("version")
        return f"edited in Grafana since mlwatch wrote it; Grafana has version {version}"
    return ""


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


def prune_dashboards(
    grafana: Grafana, keep: set[str], report: SyncReport, *, prune: bool, force: bool
) -> None:
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
        what = f"dashboard {uid!r}"
        found_now = grafana.call(what, grafana.api.dashboard.get_dashboard, uid, allow=(404,))
        if isinstance(found_now, Refusal):
            continue  # deleted in the meantime
        edit = _hand_edit(found_now["dashboard"], found_now.get("meta", {}))
        if edit and not force:
            why = f"no longer generated, but {edit}; prune with force deletes it"
            report.add("dashboard", uid, "hand-edited", why)
            continue
        if not report.dry_run:
            grafana.call(what, grafana.api.dashboard.delete_dashboard, uid)
            logger.info("deleted Grafana dashboard %r (no longer generated)", uid)
        report.add("dashboard", uid, "delete", str(hit.get("title", "")))
