"""Grafana-managed alert rules kept in step through the alerting provisioning API
(``/api/v1/provisioning/alert-rules``), by uid, the way :mod:`mlwatch.grafana.sync` keeps
dashboards: one ``GET`` of every rule, then ``POST`` for a new rule, ``PUT`` for a changed
one, nothing for an unchanged one, and ``DELETE`` (only with ``prune``) for a rule mlwatch
wrote that is no longer generated.

A rule mlwatch writes carries the annotation ``mlwatch_hash``, the hash of its content; it
marks the rule as mlwatch's and tells an unchanged rule without comparing Grafana's copy
(which Grafana fills with defaults, so a content comparison would always differ).

Rules are written without ``X-Disable-Provenance``: they have the provenance ``api`` and
Grafana's UI shows them as provisioned and does not let anyone edit them. A hand edit would
be lost at the next sync anyway; locked, the rule has to be changed where it is generated.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlwatch.errors import ConfigError
from mlwatch.grafana.sync_report import SyncReport, by_uid, content_hash, unified_diff

if TYPE_CHECKING:
    from mlwatch.grafana.grafana_api import Grafana

logger = logging.getLogger("mlwatch.grafana")

#: The annotation holding the hash of what mlwatch wrote.
HASH_ANNOTATION = "mlwatch_hash"


def stamped_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """``rule`` as mlwatch writes it: its annotation ``mlwatch_hash`` holds the hash of the
    rest (server-set keys left out)."""
    out = copy.deepcopy(dict(rule))
    for key in ("id", "updated", "provenance"):
        out.pop(key, None)
    annotations = {k: v for k, v in (out.get("annotations") or {}).items() if k != HASH_ANNOTATION}
    out["annotations"] = annotations
    out["annotations"] = {**annotations, HASH_ANNOTATION: content_hash(out)}
    return out


def _recorded(rule: Mapping[str, Any]) -> str | None:
    value = (rule.get("annotations") or {}).get(HASH_ANNOTATION)
    return str(value) if value else None


def stamp_rules(rules: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rules by uid, stamped; ``ConfigError`` for a rule without a uid or a uid twice."""
    out: dict[str, dict[str, Any]] = {}
    for i, rule in enumerate(rules):
        uid = rule.get("uid")
        if not isinstance(uid, str) or not uid:
            raise ConfigError("alert_rules", f"rule {i} ({rule.get('title')!r}) has no uid")
        if uid in out:
            raise ConfigError("alert_rules", f"uid {uid!r} appears twice")
        out[uid] = stamped_rule(rule)
    return out


def sync_alert_rules(
    grafana: Grafana,
    rules: Sequence[Mapping[str, Any]],
    report: SyncReport,
    *,
    force: bool = False,
    prune: bool = False,
) -> None:
    """Bring Grafana's alert rules in step with ``rules`` (provisioning-API JSON, each with
    a ``uid``), adding what was done to ``report``. A rule of that uid that mlwatch did not
    write is reported as ``hand-edited`` and replaced only with ``force``."""
    desired = stamp_rules(rules)
    api = grafana.api.alertingprovisioning
    existing = by_uid(grafana.call("the alert rules", api.get_alertrules_all) or [])
    for uid, rule in sorted(desired.items()):
        what = f"alert rule {uid!r}"
        current = existing.get(uid)
        if current is None:
            if not report.dry_run:
                grafana.call(what, api.create_alertrule, rule)
                logger.info("created Grafana alert rule %r", uid)
            report.add("rule", uid, "create", rule.get("title", ""), _diff(report, uid, None, rule))
            continue
        recorded = _recorded(current)
        if recorded == _recorded(rule):
            report.add("rule", uid, "unchanged")
            continue
        if recorded is None and not force:
            why = "in Grafana without mlwatch's hash: made by hand or by another tool"
            report.add("rule", uid, "hand-edited", why, unified_diff(uid, current, rule))
            continue
        if not report.dry_run:
            grafana.call(what, api.update_alertrule, uid, rule)
            logger.info("updated Grafana alert rule %r", uid)
        report.add("rule", uid, "update", rule.get("title", ""), _diff(report, uid, current, rule))
    for uid, current in sorted(existing.items()):
        if uid in desired or _recorded(current) is None:
            continue  # not mlwatch's
        if not prune:
            report.add("rule", uid, "stale", "no longer generated; prune deletes it")
            continue
        if not report.dry_run:
            grafana.call(f"alert rule {uid!r}", api.delete_alertrule, uid)
            logger.info("deleted Grafana alert rule %r (no longer generated)", uid)
        report.add("rule", uid, "delete", str(current.get("title", "")))


def _diff(
    report: SyncReport, uid: str, before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> str:
    return unified_diff(uid, before, after) if report.dry_run else ""
