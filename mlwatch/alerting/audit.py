"""Retraining triggers copied to Elasticsearch when it is configured: one document per
trigger (its ``_id`` the idempotency key), written again after each attempt, in the index
``mlwatch-triggers-<namespace>``, so the audit is searchable beside the events in Kibana.

The store stays the record the outbox works from; a copy that cannot be written is
logged (at most once a minute) and tried again with the trigger's next change.
"""

from __future__ import annotations

import logging
from typing import Any

from mlwatch.logs import RateLimitedLog
from mlwatch.settings import Config

log = RateLimitedLog(logging.getLogger("mlwatch.retrain"))


def index_name(namespace: str) -> str:
    return f"mlwatch-triggers-{namespace}"


class ElasticAudit:
    """Writes trigger documents with its own client (the settings' auth, TLS, timeouts)."""

    def __init__(self, config: Config) -> None:
        from mlwatch.elastic.client import make_client

        self.client = make_client(config)
        self.index = index_name(config.data_stream_namespace)

    def __call__(self, trigger: dict[str, Any]) -> None:
        try:
            self.client.index(index=self.index, id=trigger["key"], document=trigger)
        except Exception as exc:  # the store has it; the next change tries again
            log.warning(
                "audit.elastic",
                "copying trigger %s to Elasticsearch failed: %s",
                trigger["key"],
                exc,
            )

    def close(self) -> None:
        self.client.close()
