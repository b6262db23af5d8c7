"""Every mlwatch setting, documented in one place.

A setting has a key (used in ``mlwatch.yaml``), an environment variable
(``MLWATCH_`` + the key in upper case) and a keyword of ``mlwatch.configure()``.
Precedence, lowest first: the default, the config file (``MLWATCH_CONFIG`` or an
explicit path), the environment, then keyword arguments.

A secret setting (``token``, passwords, keys) can also come from a file: the
environment variable with ``_FILE`` appended (``MLWATCH_TOKEN_FILE``), or the key
with ``_file`` appended in the config file, names the file holding the value.

Values are checked when loaded; a bad value raises :class:`~mlwatch.errors.ConfigError`
naming the key and where it came from (the file, or the environment variable).

The module is standard-library only so the client can use it; YAML files need
PyYAML (part of ``mlwatch[sidecar]``); a ``.json`` config file needs nothing.

>>> cfg = load_config(env={"MLWATCH_SAMPLE_RATE": "0.5"})
>>> cfg.sample_rate
0.5
>>> load_config(env={"MLWATCH_SAMPLE_RATE": "2"})
Traceback (most recent call last):
...
mlwatch.errors.ConfigError: sample_rate: must be at most 1.0, got 2.0 (in MLWATCH_SAMPLE_RATE)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlwatch.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_USERINFO = re.compile(r"(\w+://)[^/@,\s]*@")
TASKS = ("classification", "regression")
FEATURE_TYPES = ("numeric", "categorical")
SENSITIVE_ACTIONS = ("hash", "drop")


def _setting(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None,
             choices: tuple[str, ...] | None = None, secret: bool = False,
             pattern: str | None = None) -> Any:
    return field(default=default, metadata={"doc": doc, "lo": lo, "hi": hi, "choices": choices,
                                            "secret": secret, "pattern": pattern})


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature of a model: its type drives metrics and drift methods."""

    name: str
    type: str = "numeric"
    sensitive: str | None = None  # None, "hash" or "drop"


@dataclass(frozen=True)
class Monitoring:
    """The drift and KPI jobs of one model (the ``reference``, ``schedule``, ``window``,
    ``drift`` and ``kpi`` keys of a model spec)."""

    reference: str | None = None  # a CSV or Parquet file of reference inputs
    reference_window: tuple[str, str] | None = None  # or [since, until] of served traffic
    every_s: float | None = 300.0  # interval trigger...
    cron: str | None = None  # ...or a crontab expression (then every_s is None)
    window_s: float = 3600.0
    sliding: bool = False  # tumbling windows unless set
    settle_s: float = 60.0  # a tumbling window is evaluated this long after it closes
    method: str | None = None  # force one drift method; None = auto selection
    alpha: float = 0.05
    correction: str | None = None  # None, "bonferroni" or "bh"
    min_effect: float | None = None
    drift_share: float = 0.5
    kpi_min_samples: int = 100
    kpi_lookback: int = 24  # windows recomputed each run, so late labels update them


@dataclass(frozen=True)
class ModelSpec:
    """What mlwatch knows about a model beyond its events."""

    name: str
    version: str | None = None
    task: str = "classification"
    features: tuple[FeatureSpec, ...] = ()
    prediction_field: str | None = None  # dotted path in the return value; None = the value itself
    label_field: str | None = None  # dotted path in the feedback label; None = the label itself
    score_field: str | None = None  # dotted path of the class probabilities ("" = the prediction)
    classes: tuple[Any, ...] | None = None  # class of each probability index
    monitoring: Monitoring | None = None  # drift and KPI jobs; None = not scheduled

    def feature(self, name: str) -> FeatureSpec | None:
        for spec in self.features:
            if spec.name == name:
                return spec
        return None


@dataclass(frozen=True)
class Config:
    """The resolved settings. Build it with :func:`load_config`."""

    # --- client ---
    sidecar_url: str | None = _setting(
        None, "URL of the sidecar, e.g. http://127.0.0.1:8765. Unset: events go to the "
        "embedded store in data_dir (local mode). 'off': monitoring does nothing.")
    token: str | None = _setting(
        None, "Bearer token. When set, the sidecar requires it on /v1/* and /metrics "
        "(not on /healthz, /readyz); the client sends it. Never logged.", secret=True)
    enabled: bool = _setting(True, "Master switch; false turns the decorator into a plain call.")
    model: str | None = _setting(None, "Default model name for @monitor and log_feedback.")
    version: str | None = _setting(None, "Default model version.")
    code_version: str | None = _setting(
        None, "Code version recorded on every event. Unset: the git commit of the working "
        "directory, else the mlwatch package version.")
    run_id: str | None = _setting(None, "Experiment run id (e.g. an MLflow run) recorded on events.")
    sample_rate: float = _setting(
        1.0, "Share of events whose feature payload is kept. Counts, latency and "
        "predictions stay exact.", lo=0.0, hi=1.0)
    queue_size: int = _setting(
        10_000, "Bound of the in-process queue, in rows (a batch call of n rows takes n); "
        "events beyond it are dropped and counted (reason queue_full).", lo=1, hi=10_000_000)
    batch_size: int = _setting(
        500, "Most events per request to the sidecar (a request is also kept under 8 MiB "
        "before gzip).", lo=1, hi=10_000)
    flush_interval_ms: int = _setting(
        200, "Longest time an event waits in the client before it is sent.", lo=1, hi=60_000)
    send_timeout_s: float = _setting(5.0, "Timeout of one request to the sidecar (or of one "
                                     "forward-protocol attempt).",
                                     lo=0.01, hi=300)
    retry_timeout_s: float = _setting(
        30.0, "How long the client retries one batch (sidecar down, 429, 503) before it "
        "drops it (reason send_failed).", lo=0.0, hi=3600)
    # --- sidecar ---
    data_dir: str = _setting(
        "mlwatch-data", "Directory of the spool and the embedded store (store.db).")
    host: str = _setting("127.0.0.1", "Address the sidecar binds to. Localhost unless told otherwise.")
    port: int = _setting(8765, "Port of the sidecar's HTTP API.", lo=0, hi=65535)
    max_body_bytes: int = _setting(
        16 * 1024 * 1024, "Largest request body the sidecar accepts, after gzip "
        "decompression (413 beyond).", lo=1024, hi=1 << 31)
    max_events_per_request: int = _setting(
        10_000, "Most events in one POST /v1/events (413 beyond).", lo=1, hi=1_000_000)
    spool_fsync: str = _setting(
        "interval", "When the spool calls fsync: 'always' (before each 202) or 'interval' "
        "(group commit; the 202 waits for the next periodic fsync).",
        choices=("always", "interval"))
    spool_fsync_interval_ms: int = _setting(
        20, "Group-commit period of the 'interval' policy.", lo=1, hi=10_000)
    spool_segment_bytes: int = _setting(
        64 * 1024 * 1024, "Size at which the spool starts a new segment file.",
        lo=4096, hi=1 << 34)
    spool_max_bytes: int = _setting(
        1024 * 1024 * 1024, "Disk bound of the spool; when reached, ingest answers 503 with "
        "Retry-After until sinks catch up.", lo=8192, hi=1 << 42)
    retention_days: float = _setting(
        30.0, "Embedded store retention; older events and feedback are deleted. 0 keeps all.",
        lo=0, hi=36_500)
    hash_key: str | None = _setting(
        None, "Key of the HMAC-SHA256 applied to features marked 'sensitive: hash'. Unset: a "
        "random key is created once in data_dir/hash.key.", secret=True)
    window_source: str = _setting(
        "store", "Where the drift job reads a window: 'store' (the embedded store's events) "
        "or 'elasticsearch' (aggregations on the reference's bins; no rows pulled; needs "
        "elasticsearch_url).", choices=("store", "elasticsearch"))
    profile_slice_s: float = _setting(
        60.0, "The sidecar summarises events of monitored models into profiles per slice of "
        "this many seconds of prediction time; the drift job merges them.", lo=1, hi=86_400)
    scheduler: bool = _setting(
        True, "Run the drift and KPI jobs of models with a monitoring section inside the "
        "sidecar. Turn off when `mlwatch scheduler` runs them as a separate process.")
    log_level: str = _setting("info", "Log level of the sidecar.",
                              choices=("debug", "info", "warning", "error"))
    # --- Elasticsearch sink (sidecar) ---
    elasticsearch_url: str | None = _setting(
        None, "Elasticsearch URL(s), comma-separated (e.g. https://es1:9200,https://es2:9200). "
        "Set: the sidecar also ships every event from its spool to Elasticsearch.")
    elasticsearch_api_key: str | None = _setting(
        None, "Elasticsearch API key (the base64 'encoded' form). Never logged.", secret=True)
    elasticsearch_username: str | None = _setting(None, "Elasticsearch basic-auth user.")
    elasticsearch_password: str | None = _setting(
        None, "Elasticsearch basic-auth password. Never logged.", secret=True)
    elasticsearch_ca_file: str | None = _setting(
        None, "PEM file of the CA that signed Elasticsearch's certificate (https URLs).")
    elasticsearch_verify_certs: bool = _setting(
        True, "Verify Elasticsearch's TLS certificate. Turn off only for a throwaway cluster.")
    elasticsearch_namespace: str = _setting(
        "default", "Data stream namespace: events go to logs-mlwatch.predictions-<namespace>, "
        "feedback to logs-mlwatch.feedback-<namespace>. Lowercase letters, digits, '_' and "
        "'.' (Elastic's rule: no '-').", pattern=r"^[a-z0-9][a-z0-9_.]{0,99}$")
    elasticsearch_batch_size: int = _setting(
        5000, "Most documents per bulk request.", lo=1, hi=100_000)
    elasticsearch_flush_interval_ms: int = _setting(
        200, "Longest time the sink waits to fill a bulk request before it sends a partial one.",
        lo=0, hi=60_000)
    elasticsearch_concurrency: int = _setting(
        2, "Bulk requests in flight at once.", lo=1, hi=32)
    elasticsearch_timeout_s: float = _setting(30.0, "Timeout of one request to Elasticsearch.",
                                              lo=0.1, hi=600)
    elasticsearch_compress: bool = _setting(
        False, "Gzip bulk requests. Worth it over a slow or metered link; on a local network "
        "it costs more CPU (about 45 us per document) than it saves.")
    elasticsearch_install_templates: bool = _setting(
        True, "Install the index templates and ILM policy at startup (idempotent). Turn off "
        "when they are managed elsewhere (exporters/elasticsearch/).")
    elasticsearch_shards: int = _setting(1, "Primary shards of each backing index.", lo=1, hi=1024)
    elasticsearch_replicas: int | None = _setting(
        None, "Replicas of each backing index. Unset: auto_expand_replicas 0-1 (none on a "
        "single node, one as soon as a second node joins).", lo=0, hi=16)
    elasticsearch_rollover_size: str = _setting(
        "50gb", "ILM rollover when a primary shard reaches this size.")
    elasticsearch_rollover_age: str = _setting("30d", "ILM rollover at this index age at most.")
    elasticsearch_retention: str = _setting(
        "90d", "ILM deletes backing indices this long after rollover.")
    # --- Fluentd forward protocol ---
    fluentd_host: str | None = _setting(
        None, "Client: send events to a Fluentd / Fluent Bit forward input at this host instead "
        "of the sidecar (tag mlwatch.<model>).")
    fluentd_port: int = _setting(24224, "Client: port of that forward input.", lo=1, hi=65535)
    forward_port: int | None = _setting(
        None, "Sidecar: listen for the Fluentd forward protocol on this port (unset: off).",
        lo=0, hi=65535)
    forward_shared_key: str | None = _setting(
        None, "Shared key of the forward input's handshake (and the client's). Unset: no "
        "handshake. Never logged.", secret=True)
    # --- models (file only) ---
    models: tuple[ModelSpec, ...] = field(
        default=(), metadata={"doc": "Model specs (config file only); see the README.",
                              "file_only": True})
    source: str | None = field(default=None, metadata={"internal": True})

    def model_spec(self, name: str) -> ModelSpec | None:
        for spec in self.models:
            if spec.name == name:
                return spec
        return None

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
            elif f.name.endswith("_url") and isinstance(value, str):
                value = _USERINFO.sub(r"\1***@", value)
            out[f.name] = value
        return out


def settings_fields() -> list[dataclasses.Field[Any]]:
    """The user-facing settings, in documentation order."""
    return [f for f in dataclasses.fields(Config)
            if not f.metadata.get("internal") and not f.metadata.get("file_only")]


def settings_table() -> str:
    """The settings reference as a Markdown table (the README embeds it; a test compares)."""
    rows = ["| key | environment | default | meaning |", "|---|---|---|---|"]
    for f in settings_fields():
        default = f.default
        shown = "(unset)" if default is None else ("***" if f.metadata.get("secret") else default)
        rows.append(f"| `{f.name}` | `{env_name(f.name)}` | `{shown}` | {f.metadata['doc']} |")
    return "\n".join(rows) + "\n"


def env_name(key: str) -> str:
    return "MLWATCH_" + key.upper()


def _coerce(f: dataclasses.Field[Any], raw: Any, source: str) -> Any:
    """Convert a raw file/env/keyword value to the field's type, checking bounds."""
    key = f.name
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if raw is None:
        if "None" in kind:
            return None
        raise ConfigError(key, "must not be empty", source=source)
    value: Any
    if kind.startswith("bool"):
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
            value = True
        elif isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off"):
            value = False
        else:
            raise ConfigError(key, f"expected true or false, got {raw!r}", source=source)
    elif kind.startswith("int"):
        try:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            value = int(raw)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected an integer, got {raw!r}", source=source) from None
    elif kind.startswith("float"):
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected a number, got {raw!r}", source=source) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(key, f"expected a finite number, got {raw!r}", source=source)
    else:
        if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
            raise ConfigError(key, f"expected a string, got {type(raw).__name__}", source=source)
        value = str(raw)
        if value == "" and "None" in kind:
            return None
    lo, hi, choices = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("choices")
    if lo is not None and value < lo:
        raise ConfigError(key, f"must be at least {lo}, got {value}", source=source)
    if hi is not None and value > hi:
        raise ConfigError(key, f"must be at most {hi}, got {value}", source=source)
    if choices and value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}, got {value!r}", source=source)
    if (pattern := f.metadata.get("pattern")) and not re.match(pattern, str(value)):
        raise ConfigError(key, f"must match {pattern}, got {value!r}", source=source)
    return value


def _read_secret(path: Any, source: str | None) -> str:
    """A secret kept in a file (a Kubernetes secret volume, a Docker secret): its text,
    without the trailing newline editors add."""
    try:
        return Path(str(path)).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError("config", f"cannot read secret file {path}: {exc.strerror}",
                          source=source) from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}", source=str(path)) from exc
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("config", f"invalid JSON at line {exc.lineno}: {exc.msg}",
                              source=str(path)) from exc
    else:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("config", "reading YAML needs PyYAML: pip install 'mlwatch[sidecar]'",
                              source=str(path)) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError("config", f"invalid YAML{where}: {exc}", source=str(path)) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config", "the top level must be a mapping of keys to values",
                          source=str(path))
    return data


def _parse_models(raw: Any, source: str) -> tuple[ModelSpec, ...]:
    if not isinstance(raw, list):
        raise ConfigError("models", "expected a list of model specs", source=source)
    specs: list[ModelSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        at = f"models[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(at, "expected a mapping with at least 'name'", source=source)
        unknown = set(item) - {"name", "version", "task", "features", "prediction_field",
                               "label_field", "score_field", "classes", *MONITORING_KEYS}
        if unknown:
            raise ConfigError(f"{at}.{sorted(unknown)[0]}", "unknown key", source=source)
        name = item.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(f"{at}.name", "expected a name of letters, digits, '_.:-' "
                              f"(at most 128), got {name!r}", source=source)
        if name in seen:
            raise ConfigError(f"{at}.name", f"model {name!r} is listed twice", source=source)
        seen.add(name)
        task = item.get("task", "classification")
        if task not in TASKS:
            raise ConfigError(f"{at}.task", f"must be one of {', '.join(TASKS)}, got {task!r}",
                              source=source)
        version = item.get("version")
        if version is not None:
            version = str(version)
        features = _parse_features(item.get("features", []), f"{at}.features", source)
        for key in ("prediction_field", "label_field", "score_field"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise ConfigError(f"{at}.{key}", "expected a dotted path string", source=source)
        classes = item.get("classes")
        if classes is not None and (not isinstance(classes, list) or len(classes) < 2 or any(
                not isinstance(c, (str, int)) or isinstance(c, bool) for c in classes)):
            raise ConfigError(f"{at}.classes", "expected a list of at least two class labels "
                              "(strings or integers)", source=source)
        monitoring = (_parse_monitoring(item, at, source)
                      if any(k in item for k in MONITORING_KEYS) else None)
        specs.append(ModelSpec(name=name, version=version, task=task, features=features,
                               prediction_field=item.get("prediction_field"),
                               label_field=item.get("label_field"),
                               score_field=item.get("score_field"),
                               classes=tuple(classes) if classes is not None else None,
                               monitoring=monitoring))
    return tuple(specs)


MONITORING_KEYS = ("reference", "schedule", "window", "sliding", "settle", "drift", "kpi")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(raw: Any, at: str, source: str | None = None) -> float:
    """Seconds from ``90``, ``"30s"``, ``"5m"``, ``"1h"``, ``"7d"``.

    >>> parse_duration("5m", "schedule")
    300.0
    """
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw > 0:
        return float(raw)
    match = _DURATION_RE.match(str(raw)) if isinstance(raw, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(at, f"expected a duration such as 30s, 5m, 1h or 7d, got {raw!r}",
                          source=source)
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


def _rfc3339(raw: Any, at: str, source: str) -> str:
    """A time from the config as RFC 3339 UTC: YAML reads an unquoted timestamp as a
    datetime, which is accepted too."""
    import datetime as dt

    if isinstance(raw, dt.datetime):
        when = raw if raw.tzinfo else raw.replace(tzinfo=dt.timezone.utc)
        return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(raw, str) and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d", raw):
        return raw
    raise ConfigError(at, f"expected an RFC 3339 time like 2026-11-01T00:00:00Z, got {raw!r}",
                      source=source)


def _parse_monitoring(item: dict[str, Any], at: str, source: str) -> Monitoring:
    values: dict[str, Any] = {}
    ref = item.get("reference")
    if isinstance(ref, str) and ref:
        values["reference"] = ref
    elif isinstance(ref, dict) and set(ref) == {"since", "until"}:
        values["reference_window"] = (_rfc3339(ref["since"], f"{at}.reference.since", source),
                                      _rfc3339(ref["until"], f"{at}.reference.until", source))
    else:
        raise ConfigError(f"{at}.reference", "a monitored model needs a reference: a CSV/Parquet "
                          "path or {since: <RFC 3339>, until: <RFC 3339>}", source=source)
    schedule = item.get("schedule", "5m")
    if isinstance(schedule, dict) and set(schedule) == {"cron"} and isinstance(schedule["cron"], str):
        if len(schedule["cron"].split()) != 5:
            raise ConfigError(f"{at}.schedule.cron", "expected five crontab fields, got "
                              f"{schedule['cron']!r}", source=source)
        values["cron"], values["every_s"] = schedule["cron"], None
    else:
        values["every_s"] = parse_duration(schedule, f"{at}.schedule", source)
    if "window" in item:
        values["window_s"] = parse_duration(item["window"], f"{at}.window", source)
    if "settle" in item:
        values["settle_s"] = (0.0 if item["settle"] in (0, "0", "0s") else
                              parse_duration(item["settle"], f"{at}.settle", source))
    if "sliding" in item:
        if not isinstance(item["sliding"], bool):
            raise ConfigError(f"{at}.sliding", "expected true or false", source=source)
        values["sliding"] = item["sliding"]
    drift = item.get("drift") or {}
    kpi = item.get("kpi") or {}
    for sub, allowed in ((drift, {"method", "alpha", "correction", "min_effect", "drift_share"}),
                         (kpi, {"min_samples", "lookback"})):
        if not isinstance(sub, dict):
            raise ConfigError(at, "drift and kpi must be mappings", source=source)
        if unknown := set(sub) - allowed:
            raise ConfigError(f"{at}.{'drift' if sub is drift else 'kpi'}.{sorted(unknown)[0]}",
                              "unknown key", source=source)
    if drift.get("method") is not None:
        values["method"] = str(drift["method"])
    if drift.get("correction") not in (None, "bonferroni", "bh"):
        raise ConfigError(f"{at}.drift.correction", "must be bonferroni or bh", source=source)
    values["correction"] = drift.get("correction")
    for key, lo, hi in (("alpha", 0.0, 1.0), ("drift_share", 0.0, 1.0), ("min_effect", 0.0, None)):
        if drift.get(key) is None:
            continue
        value = drift[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                lo < value and (hi is None or value <= hi)):
            raise ConfigError(f"{at}.drift.{key}", f"expected a number in ({lo}, {hi or 'inf'}]"
                              f", got {value!r}", source=source)
        values[key] = float(value)
    for key, field_name in (("min_samples", "kpi_min_samples"), ("lookback", "kpi_lookback")):
        if key in kpi:
            if isinstance(kpi[key], bool) or not isinstance(kpi[key], int) or kpi[key] < 1:
                raise ConfigError(f"{at}.kpi.{key}", f"expected a positive integer, got "
                                  f"{kpi[key]!r}", source=source)
            values[field_name] = kpi[key]
    return Monitoring(**values)


def _parse_features(raw: Any, at: str, source: str) -> tuple[FeatureSpec, ...]:
    if not isinstance(raw, list):
        raise ConfigError(at, "expected a list of features", source=source)
    out: list[FeatureSpec] = []
    for j, feat in enumerate(raw):
        fat = f"{at}[{j}]"
        if isinstance(feat, str):
            feat = {"name": feat}
        if not isinstance(feat, dict) or not isinstance(feat.get("name"), str) or not feat["name"]:
            raise ConfigError(f"{fat}.name", "every feature needs a non-empty 'name'", source=source)
        unknown = set(feat) - {"name", "type", "sensitive"}
        if unknown:
            raise ConfigError(f"{fat}.{sorted(unknown)[0]}", "unknown key", source=source)
        ftype = feat.get("type", "numeric")
        if ftype not in FEATURE_TYPES:
            raise ConfigError(f"{fat}.type", f"must be numeric or categorical, got {ftype!r}",
                              source=source)
        sensitive = feat.get("sensitive")
        if sensitive is True:
            sensitive = "hash"
        elif sensitive is False:
            sensitive = None
        if sensitive is not None and sensitive not in SENSITIVE_ACTIONS:
            raise ConfigError(f"{fat}.sensitive", f"must be true, false, hash or drop, got "
                              f"{sensitive!r}", source=source)
        out.append(FeatureSpec(name=feat["name"], type=ftype, sensitive=sensitive))
    return tuple(out)


def load_config(path: str | os.PathLike[str] | None = None, *,
                env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Resolve the settings from defaults, the config file, the environment and keywords.

    ``path`` defaults to ``$MLWATCH_CONFIG``; ``env`` to ``os.environ``.
    """
    env = os.environ if env is None else env
    fields = {f.name: f for f in dataclasses.fields(Config) if not f.metadata.get("internal")}
    values: dict[str, Any] = {}
    file_path = Path(path) if path is not None else (
        Path(env["MLWATCH_CONFIG"]) if env.get("MLWATCH_CONFIG") else None)
    source = str(file_path) if file_path is not None else None
    if file_path is not None:
        data = _read_file(file_path)
        for key, raw in data.items():
            if (isinstance(key, str) and key.endswith("_file") and key not in fields
                    and fields.get(key[:-5]) and fields[key[:-5]].metadata.get("secret")):
                values[key[:-5]] = _coerce(fields[key[:-5]], _read_secret(raw, source),
                                           str(file_path))
                continue
            if key not in fields:
                raise ConfigError(str(key), "unknown key", source=source)
            if key == "models":
                values["models"] = _parse_models(raw, str(file_path))
            elif key == "sidecar_url" and raw is False:  # YAML reads a bare `off` as false
                values[key] = "off"
            else:
                values[key] = _coerce(fields[key], raw, str(file_path))
    for f in settings_fields():
        name = env_name(f.name)
        if name in env:
            values[f.name] = _coerce(f, env[name], name)
        elif f.metadata.get("secret") and env.get(name + "_FILE"):
            values[f.name] = _coerce(f, _read_secret(env[name + "_FILE"], name + "_FILE"),
                                     name + "_FILE")
    for key, raw in overrides.items():
        if key not in fields or fields[key].metadata.get("file_only"):
            raise ConfigError(key, "unknown setting", source="keyword argument")
        if raw is not None:
            values[key] = _coerce(fields[key], raw, "keyword argument")
    config = Config(source=source, **values)
    if config.spool_max_bytes < 2 * config.spool_segment_bytes:
        raise ConfigError("spool_max_bytes", f"must be at least twice spool_segment_bytes "
                          f"({config.spool_segment_bytes}), got {config.spool_max_bytes}",
                          source=source)
    return config


if __name__ == "__main__":  # python -m mlwatch.settings prints the README's reference table
    print(settings_table(), end="")
