"""The scheduler's Grafana job: every ``grafana_sync_s``, the config's dashboards synced to
Grafana (never forced, never pruned: a hand edit is reported in the log and kept), and
each retraining trigger made since the sidecar started marked as an annotation on its
model's overview dashboard.

Triggers are annotated once per process: one made while Grafana was down is annotated at
the next run; one made before a restart is not (its record stays in the store and in
``GET /v1/models/{model}/triggers``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlwatch.settings import Config
    from mlwatch.store import EmbeddedStore

log = logging.getLogger("mlwatch.scheduler")


class GrafanaJob:
    """Run it as a scheduler job (``job(name)``); it raises what went wrong, so that the
    scheduler counts and logs the failure and the next run tries again."""

    def __init__(self, config: Config, store: EmbeddedStore) -> None:
        self.config = config
        self.store = store
        self.since_us = time.time_ns() // 1000
        self.annotated: set[str] = set()

    def __call__(self, _name: str = "sync") -> None:
        from mlwatch.grafana.common import Options
        from mlwatch.grafana.plan import sync_config

        report = sync_config(self.config, Options(source=self.config.source or "mlwatch.yaml"))
        if not report.ok:
            log.warning("grafana sync: %s", report.text(with_diffs=False).strip())
        self.annotate_triggers()

    def annotate_triggers(self) -> int:
        """Annotate the retraining triggers not annotated yet; how many were."""
        from mlwatch.grafana.common import uid
        from mlwatch.grafana.grafana_api import annotate

        done = 0
        for spec in self.config.models:
            for trig in self._new_triggers(spec.name):
                annotate(
                    _text(trig),
                    ["mlwatch", "retrain", spec.name, trig["state"]],
                    trig["created_us"] // 1000,
                    uid("overview", spec.name),
                    url=str(self.config.grafana_url),
                    token=self.config.grafana_token,
                )
                self.annotated.add(trig["key"])
                done += 1
        return done

    def _new_triggers(self, model: str) -> list[dict[str, Any]]:
        found = self.store.triggers(model) if self.store.has_triggers() else []
        return [
            t for t in found if t["created_us"] >= self.since_us and t["key"] not in self.annotated
        ]


def _text(trigger: dict[str, Any]) -> str:
    body = trigger["body"]
    return (
        f"retraining of {trigger['model']} {body.get('version', '')} via {trigger['target']}: "
        f"{body.get('reason', trigger['cause'])} ({trigger['state']})"
    )
