"""An Alertmanager configuration that closes the loop: retrain alerts go to the sidecar.

Alerts labelled ``retrain="true"`` (drift and model quality, see docs/alerting.md) are
routed to the receiver ``mlwatch-retrain``, a webhook on the sidecar's
``POST /v1/alerts/alertmanager`` with the sidecar's bearer token read from a file, and with
``send_resolved`` so the sidecar knows when a cause has cleared (its hysteresis needs it).
Every alert (retrain alerts too) goes to ``on-call``, a placeholder for the team's own
receivers.
"""

from __future__ import annotations

from typing import Any

from mlwatch.alerting.rules import Options
from mlwatch.settings import Config

RETRAIN_RECEIVER = "mlwatch-retrain"
DEFAULT_RECEIVER = "on-call"
RECEIVER_PATH = "/v1/alerts/alertmanager"


def sidecar_url(config: Config) -> str:
    """Where Alertmanager reaches the sidecar: ``sidecar_url`` when it is an HTTP URL,
    else the sidecar's ``host`` and ``port`` (a wildcard address as the loopback one)."""
    url = config.sidecar_url
    if url and url.startswith(("http://", "https://")):
        return url.rstrip("/")
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if config.tls_cert_file else "http"
    return f"{scheme}://{host}:{config.port}"


def alertmanager_config(config: Config, options: Options) -> dict[str, Any]:
    """The configuration as a dict (:mod:`.render` writes it). Grouping by model, version
    and environment gives the sidecar one notification per cause rather than one per
    feature, and never one that mixes dev's alerts with prod's."""
    group_by = ["alertname", "model", "version", "environment"]
    return {
        "route": {
            "receiver": DEFAULT_RECEIVER,
            "group_by": group_by,
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {
                    "receiver": RETRAIN_RECEIVER,
                    "matchers": ['retrain="true"'],
                    "group_by": group_by,
                    "group_wait": "30s",
                    "group_interval": "5m",
                    "repeat_interval": "1h",
                    "continue": True,  # and to on-call: people see what retraining is for
                },
                {"receiver": DEFAULT_RECEIVER},
            ],
        },
        "receivers": [
            {"name": DEFAULT_RECEIVER},
            {
                "name": RETRAIN_RECEIVER,
                "webhook_configs": [
                    {
                        "url": sidecar_url(config) + RECEIVER_PATH,
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {
                                "type": "Bearer",
                                "credentials_file": options.token_file,
                            }
                        },
                    }
                ],
            },
        ],
    }
