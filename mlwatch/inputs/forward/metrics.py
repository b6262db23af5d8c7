"""The forward input's metrics: records accepted and refused, connections closed by reason.

Every label value is created at start, so a dashboard sees a 0 rather than no series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from mlwatch.store.payloads import KINDS

#: Why the input closed a connection (``mlwatch_forward_errors_total{reason}``).
ERROR_REASONS = (
    "malformed",
    "too_large",
    "gzip",
    "auth",
    "timeout",
    "buffer_limit",
    "connection_limit",
    "unavailable",
    "error",
)


class ForwardMetrics:
    """``mlwatch_forward_*`` on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter(
            "mlwatch_forward_records",
            "Records accepted through the forward protocol, by kind.",
            ["kind"],
            registry=registry,
        )
        self.rejected = Counter(
            "mlwatch_forward_records_rejected",
            "Records of acked forward chunks that were refused (invalid or too large).",
            ["reason"],
            registry=registry,
        )
        self.errors = Counter(
            "mlwatch_forward_errors",
            "Forward connections closed by the sidecar, by reason.",
            ["reason"],
            registry=registry,
        )
        self.connections = Gauge(
            "mlwatch_forward_connections", "Open forward-protocol connections.", registry=registry
        )
        self.buffered = Gauge(
            "mlwatch_forward_buffered_bytes",
            "Bytes received on forward "
            "connections and not yet handled (incomplete messages, and "
            "complete ones until acked).",
            registry=registry,
        )
        for kind in (*KINDS, "drops"):
            self.records.labels(kind)
        for reason in ("invalid", "too_large"):
            self.rejected.labels(reason)
        for reason in ERROR_REASONS:
            self.errors.labels(reason)
