"""The proxy's own metrics, on the sidecar's registry. The predictions it records are
counted by the sidecar's model metrics like any other event."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

#: Why a proxied call was recorded only in part, or not at all.
CAPTURE_REASONS = (
    "queue_full",  # the recorder's queue was full: the call was not recorded
    "spool_full",  # the spool was full (sinks behind): not recorded
    "spool_unavailable",  # the spool's disk failed, or the sidecar is stopping
    "too_large",  # a body over proxy_capture_max_bytes: recorded without it
    "unparsable",  # a body not of its protocol: recorded without it
    "invalid",  # the events broke the wire format: not recorded
    "no_model",  # no model name in the path, a header or the settings: not recorded
    "internal",  # a bug: not recorded, and logged
)
UPSTREAM_REASONS = ("connect", "timeout", "protocol")


class ProxyMetrics:
    """Requests through the proxy, capture failures and upstream failures."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "mlwatch_proxy_requests",
            "Calls through the proxy, by the status class the caller got (2xx, 4xx, 5xx).",
            ["code"],
            registry=registry,
        )
        self.capture_failures = Counter(
            "mlwatch_proxy_capture_failures",
            "Proxied calls recorded in part or not at all, by reason; the caller's answer "
            "is never affected.",
            ["reason"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "mlwatch_proxy_upstream_errors",
            "Calls the model server did not answer (502 or 504 to the caller), by reason.",
            ["reason"],
            registry=registry,
        )
        self.restarts = Counter(
            "mlwatch_proxy_worker_restarts",
            "Times the proxy's worker process died and was started again.",
            registry=registry,
        )
        self.queued = Gauge(
            "mlwatch_proxy_queued_calls",
            "Proxied calls waiting to be recorded.",
            registry=registry,
        )
        self.codes = {c: self.requests.labels(c) for c in ("1xx", "2xx", "3xx", "4xx", "5xx")}
        self.failures = {r: self.capture_failures.labels(r) for r in CAPTURE_REASONS}
        self.upstream = {r: self.upstream_errors.labels(r) for r in UPSTREAM_REASONS}

    def answered(self, status: int) -> None:
        self.codes[f"{min(max(status // 100, 1), 5)}xx"].inc()
