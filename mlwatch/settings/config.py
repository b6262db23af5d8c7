"""The settings table: every setting with its default, bounds and meaning, in one place.

A setting has a key (``mlwatch.yaml``), an environment variable (``MLWATCH_`` + the key
in upper case) and a keyword of ``mlwatch.configure()``; docs/configuration.md embeds
:func:`settings_table` (a test keeps them equal). Loading and checking values is
:mod:`mlwatch.settings.loader`.

>>> Config().sample_rate, env_name("sample_rate")
(1.0, 'MLWATCH_SAMPLE_RATE')
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from mlwatch.settings.specs import ModelSpec
from mlwatch.settings.targets import TargetSpec
from mlwatch.wire import DEFAULT_ENVIRONMENT, ENVIRONMENT_PATTERN

_USERINFO = re.compile(r"(\w+://)[^/@,\s]*@")


def _setting(
    default: Any,
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
    pattern: str | None = None,
    rule: str | None = None,
) -> Any:
    return field(
        default=default,
        metadata={
            "doc": doc,
            "lo": lo,
            "hi": hi,
            "choices": choices,
            "secret": secret,
            "pattern": pattern,
            "rule": rule,  # the pattern in words, for the error message
        },
    )


@dataclass(frozen=True)
class Config:
    """The resolved settings. Build it with :func:`load_config`."""

    # --- client ---
    sidecar_url: str | None = _setting(
        None,
        "URL of the sidecar, e.g. http://127.0.0.1:8765. Unset: events go to the "
        "embedded store in data_dir (local mode). 'off': monitoring does nothing.",
    )
    token: str | None = _setting(
        None,
        "Bearer token. When set, the sidecar requires it on /v1/* and /metrics "
        "(not on /healthz, /readyz); the client sends it. Never logged.",
        secret=True,
    )
    enabled: bool = _setting(True, "Master switch; false turns the decorator into a plain call.")
    model: str | None = _setting(None, "Default model name for @monitor and log_feedback.")
    version: str | None = _setting(None, "Default model version.")
    code_version: str | None = _setting(
        None,
        "Code version recorded on every event. Unset: the git commit of the working "
        "directory, else the mlwatch package version.",
    )
    run_id: str | None = _setting(
        None, "Experiment run id (e.g. an MLflow run) recorded on events."
    )
    environment: str = _setting(
        DEFAULT_ENVIRONMENT,
        "The deployment's environment (dev, qa, prod, ...), part of every event's identity: "
        "a client on another than 'default' stamps its events with it, the sidecar those "
        "that name none; a label "
        "on every model metric and the default Elasticsearch namespace. Lowercase letters, "
        "digits and '_', at most 64. 'default' keeps the names data had before environments.",
        pattern=ENVIRONMENT_PATTERN,
        rule="lowercase letters, digits and '_' (at most 64, starting with a letter or digit)",
    )
    sample_rate: float = _setting(
        1.0,
        "Share of events whose feature payload is kept. Counts, latency and "
        "predictions stay exact.",
        lo=0.0,
        hi=1.0,
    )
    queue_size: int = _setting(
        10_000,
        "Bound of the in-process queue, in rows (a batch call of n rows takes n); "
        "events beyond it are dropped and counted (reason queue_full).",
        lo=1,
        hi=10_000_000,
    )
    batch_size: int = _setting(
        500,
        "Most events per request to the sidecar (a request is also kept under 8 MiB before gzip).",
        lo=1,
        hi=10_000,
    )
    flush_interval_ms: int = _setting(
        200, "Longest time an event waits in the client before it is sent.", lo=1, hi=60_000
    )
    send_timeout_s: float = _setting(
        5.0,
        "Timeout of one request to the sidecar as a whole (connect, send, answer), or of "
        "one forward-protocol attempt.",
        lo=0.01,
        hi=300,
    )
    retry_timeout_s: float = _setting(
        30.0,
        "How long the client retries one batch (sidecar down, 429, 503) before it "
        "drops it (reason send_failed).",
        lo=0.0,
        hi=3600,
    )
    # --- sidecar ---
    data_dir: str = _setting(
        "mlwatch-data", "Directory of the spool and the embedded store (store.db)."
    )
    host: str = _setting(
        "127.0.0.1", "Address the sidecar binds to. Localhost unless told otherwise."
    )
    port: int = _setting(8765, "Port of the sidecar's HTTP API.", lo=0, hi=65535)
    max_body_bytes: int = _setting(
        16 * 1024 * 1024,
        "Largest request body the sidecar accepts, after gzip decompression (413 beyond).",
        lo=1024,
        hi=1 << 31,
    )
    max_header_bytes: int = _setting(
        64 * 1024,
        "Largest request head (request line and headers) the sidecar reads; 431 beyond, "
        "before authentication.",
        lo=4096,
        hi=1 << 24,
    )
    request_timeout_s: float = _setting(
        30.0,
        "Longest a client may take to send a request's head (or, with TLS, its handshake), "
        "and again its body; 408 beyond, and the connection is closed. A connection that "
        "sends nothing that long is closed without an answer.",
        lo=0.1,
        hi=3600,
    )
    max_connections: int = _setting(
        1000,
        "Most open client connections; one more is answered 503 with Retry-After and "
        "closed at once.",
        lo=1,
        hi=1_000_000,
    )
    tls_cert_file: str | None = _setting(
        None,
        "PEM certificate (chain) of the sidecar's listener. Set with tls_key_file: the "
        "sidecar serves HTTPS only.",
    )
    tls_key_file: str | None = _setting(None, "PEM private key of tls_cert_file.")
    sink_stall_s: float = _setting(
        10.0,
        "A sink with records to deliver that commits none for this long makes the "
        "sidecar unready (/readyz 503), and says why in its state.",
        lo=0.1,
        hi=86_400,
    )
    max_events_per_request: int = _setting(
        10_000, "Most events in one POST /v1/events (413 beyond).", lo=1, hi=1_000_000
    )
    spool_fsync: str = _setting(
        "interval",
        "When the spool calls fsync: 'always' (before each 202) or 'interval' "
        "(group commit; the 202 waits for the next periodic fsync).",
        choices=("always", "interval"),
    )
    spool_fsync_interval_ms: int = _setting(
        20, "Group-commit period of the 'interval' policy.", lo=1, hi=10_000
    )
    spool_segment_bytes: int = _setting(
        64 * 1024 * 1024, "Size at which the spool starts a new segment file.", lo=4096, hi=1 << 34
    )
    spool_max_bytes: int = _setting(
        1024 * 1024 * 1024,
        "Disk bound of the spool; when reached, ingest answers 503 with "
        "Retry-After until sinks catch up.",
        lo=8192,
        hi=1 << 42,
    )
    retention_days: float = _setting(
        30.0,
        "Embedded store retention; older events and feedback are deleted. 0 keeps all.",
        lo=0,
        hi=36_500,
    )
    hash_key: str | None = _setting(
        None,
        "Key of the HMAC-SHA256 applied to features marked 'sensitive: hash'. Unset: a "
        "random key is created once in data_dir/hash.key.",
        secret=True,
    )
    window_source: str = _setting(
        "store",
        "Where the drift job reads a window: 'store' (the embedded store's events) "
        "or 'elasticsearch' (aggregations on the reference's bins; no rows pulled; needs "
        "elasticsearch_url).",
        choices=("store", "elasticsearch"),
    )
    profile_slice_s: float = _setting(
        60.0,
        "The sidecar summarises events of monitored models into profiles per slice of "
        "this many seconds of prediction time; the drift job merges them.",
        lo=1,
        hi=86_400,
    )
    scheduler: bool = _setting(
        True,
        "Run the drift and KPI jobs of models with a monitoring section inside the "
        "sidecar. Turn off when `mlwatch scheduler` runs them as a separate process.",
    )
    log_level: str = _setting(
        "info", "Log level of the sidecar.", choices=("debug", "info", "warning", "error")
    )
    public_url: str | None = _setting(
        None,
        "The sidecar's address as others reach it, for the status link in a retraining "
        "trigger. Unset: http://host:port.",
    )
    retrain_backoff_s: float = _setting(
        5.0,
        "First wait before a retraining trigger that met a 429, a 5xx or no answer is tried "
        "again (without Retry-After); it doubles with each attempt, with jitter, to 10 min.",
        lo=0.01,
        hi=3600.0,
    )
    retrain_deadline_s: float = _setting(
        86_400.0,
        "How long a retraining trigger is retried (429, 5xx, connection errors) before it "
        "is given up as failed.",
        lo=1.0,
        hi=30 * 86_400.0,
    )
    # --- Elasticsearch sink (sidecar) ---
    elasticsearch_url: str | None = _setting(
        None,
        "Elasticsearch URL(s), comma-separated (e.g. https://es1:9200,https://es2:9200). "
        "Set: the sidecar also ships every event from its spool to Elasticsearch.",
    )
    elasticsearch_api_key: str | None = _setting(
        None, "Elasticsearch API key (the base64 'encoded' form). Never logged.", secret=True
    )
    elasticsearch_username: str | None = _setting(None, "Elasticsearch basic-auth user.")
    elasticsearch_password: str | None = _setting(
        None, "Elasticsearch basic-auth password. Never logged.", secret=True
    )
    elasticsearch_ca_file: str | None = _setting(
        None, "PEM file of the CA that signed Elasticsearch's certificate (https URLs)."
    )
    elasticsearch_verify_certs: bool = _setting(
        True, "Verify Elasticsearch's TLS certificate. Turn off only for a throwaway cluster."
    )
    elasticsearch_namespace: str | None = _setting(
        None,
        "Data stream namespace: events go to logs-mlwatch.predictions-<namespace>, "
        "feedback to logs-mlwatch.feedback-<namespace>. Unset: the environment. Lowercase "
        "letters, digits, '_' and '.' (Elastic's rule: no '-').",
        pattern=r"^[a-z0-9][a-z0-9_.]{0,99}$",
    )
    elasticsearch_batch_size: int = _setting(
        5000, "Most documents per bulk request.", lo=1, hi=100_000
    )
    elasticsearch_flush_interval_ms: int = _setting(
        200,
        "Longest time the sink waits to fill a bulk request before it sends a partial one.",
        lo=0,
        hi=60_000,
    )
    elasticsearch_concurrency: int = _setting(2, "Bulk requests in flight at once.", lo=1, hi=32)
    elasticsearch_timeout_s: float = _setting(
        30.0, "Timeout of one request to Elasticsearch.", lo=0.1, hi=600
    )
    elasticsearch_compress: bool = _setting(
        False,
        "Gzip bulk requests. Worth it over a slow or metered link; on a local network "
        "it costs more CPU (about 45 us per document) than it saves.",
    )
    elasticsearch_install_templates: bool = _setting(
        True,
        "Install the index templates and ILM policy at startup (idempotent). Turn off "
        "when they are managed elsewhere (exporters/elasticsearch/).",
    )
    elasticsearch_shards: int = _setting(1, "Primary shards of each backing index.", lo=1, hi=1024)
    elasticsearch_replicas: int | None = _setting(
        None,
        "Replicas of each backing index. Unset: auto_expand_replicas 0-1 (none on a "
        "single node, one as soon as a second node joins).",
        lo=0,
        hi=16,
    )
    elasticsearch_rollover_size: str = _setting(
        "50gb", "ILM rollover when a primary shard reaches this size."
    )
    elasticsearch_rollover_age: str = _setting("30d", "ILM rollover at this index age at most.")
    elasticsearch_retention: str = _setting(
        "90d", "ILM deletes backing indices this long after rollover."
    )
    # --- Fluentd forward protocol ---
    fluentd_host: str | None = _setting(
        None,
        "Client: send events to a Fluentd / Fluent Bit forward input at this host instead "
        "of the sidecar (tag mlwatch.<model>).",
    )
    fluentd_port: int = _setting(24224, "Client: port of that forward input.", lo=1, hi=65535)
    forward_port: int | None = _setting(
        None,
        "Sidecar: listen for the Fluentd forward protocol on this port (unset: off).",
        lo=0,
        hi=65535,
    )
    forward_shared_key: str | None = _setting(
        None,
        "Shared key of the forward input's handshake (and the client's). Unset: no "
        "handshake. Never logged.",
        secret=True,
    )
    # --- proxy mode (sidecar) ---
    proxy_to: str | None = _setting(
        None,
        "Sidecar: base URL of a model server (http://127.0.0.1:8501). Set: the sidecar "
        "also listens on proxy_listen as a reverse proxy in front of it and records every "
        "inference call through it (docs/proxy.md).",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
    )
    proxy_listen: str = _setting(
        "127.0.0.1:8080",
        "host:port of the proxy's own listener, apart from the sidecar's API (its "
        "callers need no token). Localhost unless told otherwise; port 0 picks a free one.",
        pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):[0-9]{1,5}$",
    )
    proxy_format: str = _setting(
        "auto",
        "How proxied calls are read: 'auto' (Open Inference Protocol v2 and TensorFlow "
        "Serving by their paths, else 'json' when a proxy_*_path is set), 'oip', "
        "'tfserving' or 'json'.",
        choices=("auto", "oip", "tfserving", "json"),
    )
    proxy_json_route: str | None = _setting(
        None,
        "'json' format: a regular expression the path of a POST must match to be "
        "recorded (re.search). Unset: every POST.",
    )
    proxy_features_path: str | None = _setting(
        None,
        "'json' format: dotted path of the features in the request body (an object, a list "
        "of objects, or rows of values). Unset: the body itself.",
    )
    proxy_prediction_path: str | None = _setting(
        None,
        "'json' format: dotted path of the prediction(s) in the response body. Unset: the "
        "body itself.",
    )
    proxy_model_header: str | None = _setting(
        None,
        "Request header naming the model when the path does not (else the model setting).",
    )
    proxy_version_header: str | None = _setting(
        None,
        "Request header naming the model version when the path does not (else the "
        "answer's model_version, else the version setting).",
    )
    proxy_request_id_header: str = _setting(
        "x-request-id",
        "Request header whose value becomes the request_id (a batch's rows get ':<row>').",
    )
    proxy_capture_max_bytes: int = _setting(
        1024 * 1024,
        "Largest request or response body the proxy keeps for capture; a larger one is "
        "still forwarded whole, and its call recorded without features and prediction.",
        lo=0,
        hi=1 << 30,
    )
    proxy_queue_size: int = _setting(
        10_000,
        "Calls waiting to be recorded; beyond it a call is forwarded but not recorded "
        '(mlwatch_proxy_capture_failures_total{reason="queue_full"}).',
        lo=1,
        hi=10_000_000,
    )
    proxy_timeout_s: float = _setting(
        60.0,
        "Longest the proxy waits for a connection to the model server, for the head of "
        "its answer, and for each next part of the body; beyond it the caller gets 504 "
        "(or, once the answer has started, a closed connection).",
        lo=0.01,
        hi=3600,
    )
    proxy_max_connections: int = _setting(
        100, "Most connections from the proxy to the model server at once.", lo=1, hi=10_000
    )
    # --- MLflow ---
    mlflow_tracking_uri: str | None = _setting(
        None,
        "MLflow tracking server (http(s)://host:5000, or a file:/sqlite: store) that model "
        "URIs (models:/name@alias, runs:/id/model) are resolved against and that monitoring "
        "results are written to. Unset: MLflow's own default (MLFLOW_TRACKING_URI).",
    )
    mlflow_refresh_s: float = _setting(
        60.0,
        "How often an alias (models:/name@alias) is resolved again, so that a moved alias "
        "gives the new version; also the longest wait between retries while MLflow is down.",
        lo=1.0,
        hi=86_400.0,
    )
    mlflow_timeout_s: float = _setting(
        10.0, "Longest one MLflow lookup or write is waited for.", lo=0.1, hi=600.0
    )
    mlflow_wait_s: float = _setting(
        2.0,
        "Client: how long the background worker waits, once, for MLflow to name the "
        "version of a model URI before it ships events labelled with the provisional "
        "version ('@alias'); never the serving thread.",
        lo=0.0,
        hi=600.0,
    )
    mlflow_publish: bool = _setting(
        True,
        "Write each window's drift and KPI results to MLflow, as metrics of a monitoring "
        "run per model version, for models named by an MLflow URI (or when "
        "mlflow_tracking_uri is set).",
    )
    mlflow_experiment: str = _setting(
        "mlwatch-monitoring",
        "Experiment of the monitoring runs when the model's training run is not known "
        "(otherwise the training run's experiment).",
    )
    # --- Grafana ---
    grafana_url: str | None = _setting(
        None,
        "Grafana that `mlwatch dashboards sync` (and the sync job) keeps equal to the "
        "generated dashboards and alert rules, e.g. https://grafana:3000.",
    )
    grafana_token: str | None = _setting(
        None,
        "Grafana service-account token of the sync (Editor for dashboards and folders; alert "
        "rules need alerting rights). Never logged.",
        secret=True,
    )
    grafana_sync_s: float = _setting(
        0.0,
        "Run the sync as a scheduler job this often (needs grafana_url and grafana_token); "
        "0: only on `mlwatch dashboards sync`. The job never forces or prunes.",
        lo=0.0,
        hi=86_400.0,
    )
    # --- models (file only) ---
    models: tuple[ModelSpec, ...] = field(
        default=(),
        metadata={
            "doc": "Model specs (config file only); see docs/configuration.md.",
            "file_only": True,
        },
    )
    # --- retraining targets (file only) ---
    targets: tuple[TargetSpec, ...] = field(
        default=(),
        metadata={
            "doc": "Where retraining starts: GitHub Actions, GitLab, Jenkins or a signed "
            "webhook (config file only); see docs/retraining.md.",
            "file_only": True,
        },
    )
    source: str | None = field(default=None, metadata={"internal": True})

    @property
    def data_stream_namespace(self) -> str:
        """The Elasticsearch namespace: ``elasticsearch_namespace`` when set, else the
        environment, so each environment's events land in streams of their own.

        >>> Config(environment="qa").data_stream_namespace
        'qa'
        >>> Config(environment="qa", elasticsearch_namespace="shared").data_stream_namespace
        'shared'
        """
        return self.elasticsearch_namespace or self.environment

    def model_spec(self, name: str) -> ModelSpec | None:
        for spec in self.models:
            if spec.name == name:
                return spec
        return None

    def __repr__(self) -> str:
        """Secrets masked: a config that reaches a log line, a traceback or a debugger
        shows ``***`` for them and no URL user-info (as :meth:`redacted`)."""
        shown = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Config({shown})"

    __str__ = __repr__

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked — safe to log. URLs lose their
        ``user:password@`` part.

        >>> Config(elasticsearch_url="https://u:pw@es:9200,http://es2").redacted()["elasticsearch_url"]
        'https://***@es:9200,http://es2'
        """
        out: dict[str, Any] = {}
        for f in settings_fields():
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            elif f.name.endswith(("_url", "_uri")) and isinstance(value, str):
                value = _USERINFO.sub(r"\1***@", value)
            out[f.name] = value
        return out


def settings_fields() -> list[dataclasses.Field[Any]]:
    """The user-facing settings, in documentation order."""
    return [
        f
        for f in dataclasses.fields(Config)
        if not f.metadata.get("internal") and not f.metadata.get("file_only")
    ]


def settings_table() -> str:
    """The settings reference as a Markdown table (docs/configuration.md embeds it; a test
    compares)."""
    rows = ["| key | environment | default | meaning |", "|---|---|---|---|"]
    for f in settings_fields():
        default = f.default
        shown = "(unset)" if default is None else ("***" if f.metadata.get("secret") else default)
        rows.append(f"| `{f.name}` | `{env_name(f.name)}` | `{shown}` | {f.metadata['doc']} |")
    return "\n".join(rows) + "\n"


def env_name(key: str) -> str:
    return "MLWATCH_" + key.upper()
