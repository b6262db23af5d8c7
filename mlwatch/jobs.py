"""The drift and KPI jobs: read a window from the store, compute, record, export.

One run of a job, for one model:

- **drift**: the reference profile of the model (computed once from the reference file
  or the reference window of served traffic, then kept in the store) against a profile
  of the current window for each version served in it, with the model's drift options.
  The window's profile is built on the reference's edges from the stored events
  (features read as columns by SQLite), or — ``window_source: elasticsearch`` — from
  Elasticsearch aggregations (:mod:`mlwatch.elastic.aggregations`), so statistics from
  profiles and from raw data agree.
- **kpi**: predictions joined to their labels for the last ``kpi_lookback`` windows;
  every run recomputes them, so a label that arrives late updates its own window. The
  gauges show the newest window with at least ``kpi_min_samples`` labelled predictions.

Results go to the store (``GET /v1/models/{model}/status`` shows the newest), to the
gauges of design.md (``mlwatch_feature_drift_score``, ``mlwatch_feature_drift_detected``,
``mlwatch_dataset_drift_share``, ``mlwatch_model_kpi``) and to the log.

Windows: tumbling windows end at the last multiple of the window size that is at least
``settle`` (60 s) in the past (the last complete, settled window); a sliding window ends
now.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from mlwatch.errors import MlwatchError
from mlwatch.settings import Config, ModelSpec, Monitoring
from mlwatch.store import EmbeddedStore
from mlwatch.wire import parse_ts

log = logging.getLogger("mlwatch.jobs")

ANY_VERSION = "*"  # the key of a reference shared by every version of a model


class JobError(MlwatchError):
    """A job cannot run (no reference, unreadable reference file, no features)."""


class ResultMetrics:
    """The result gauges, labelled as design.md says."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.drift_score = Gauge("mlwatch_feature_drift_score", "Drift score of a feature in "
                                 "the last window (method-specific; see mlwatch.stats)",
                                 ["model", "version", "feature", "method"], registry=registry)
        self.drift_detected = Gauge("mlwatch_feature_drift_detected", "1 when the feature "
                                    "drifted in the last window", ["model", "version", "feature"],
                                    registry=registry)
        self.drift_share = Gauge("mlwatch_dataset_drift_share", "Share of drifted features in "
                                 "the last window", ["model", "version"], registry=registry)
        self.dataset_drift = Gauge("mlwatch_dataset_drift", "1 when the share of drifted "
                                   "features reached the model's drift_share",
                                   ["model", "version"], registry=registry)
        self.kpi = Gauge("mlwatch_model_kpi", "Model KPI of the newest window with enough "
                         "labels", ["model", "version", "kpi"], registry=registry)
        self.kpi_bound = Gauge("mlwatch_model_kpi_interval", "Confidence interval of a KPI "
                               "(bound lower or upper)", ["model", "version", "kpi", "bound"],
                               registry=registry)
        self.kpi_samples = Gauge("mlwatch_model_kpi_samples", "Labelled predictions behind the "
                                 "KPIs", ["model", "version"], registry=registry)


def window_bounds(mon: Monitoring, now_s: float) -> tuple[int, int]:
    """``[start, end)`` in microseconds of the window a run at ``now_s`` evaluates.

    >>> from mlwatch.settings import Monitoring
    >>> window_bounds(Monitoring(window_s=3600), 7300.0)
    (3600000000, 7200000000)
    >>> window_bounds(Monitoring(window_s=3600, sliding=True), 7300.0)
    (3700000000, 7300000000)
    >>> window_bounds(Monitoring(window_s=3600), 7230.0)  # closed 30 s ago: not settled yet
    (0, 3600000000)

    A tumbling window is the last one closed at least ``settle_s`` ago, so events still in
    clients' queues and the spool when it closed are in it.
    """
    size_us = int(mon.window_s * 1_000_000)
    now_us = int(now_s * 1_000_000)
    if mon.sliding:
        return now_us - size_us, now_us
    settled = now_us - int(mon.settle_s * 1_000_000)
    end = settled - settled % size_us
    return end - size_us, end


def _ts_us(text: str, what: str) -> int:
    try:
        return parse_ts(text, line=None)[1]
    except Exception as exc:
        raise JobError(f"{what}: expected an RFC 3339 time, got {text!r}") from exc


class Jobs:
    """Runs the jobs of the configured models against one store."""

    def __init__(self, config: Config, store: EmbeddedStore, registry: CollectorRegistry, *,
                 clock: Any = time.time) -> None:
        self.config = config
        self.store = store
        self.metrics = ResultMetrics(registry)
        self.clock = clock
        self._references: dict[tuple[str, str, str], Any] = {}
        self._es_client: Any = None
        self._written: set[tuple[int, tuple[str, ...]]] = set()  # series set by this run
        self._series: dict[int, set[tuple[str, ...]]] = {}  # every series set so far

    def close(self) -> None:
        """Release the Elasticsearch client, if one was opened."""
        if self._es_client is not None:
            self._es_client.close()
            self._es_client = None

    def monitored(self) -> list[ModelSpec]:
        return [m for m in self.config.models if m.monitoring is not None]

    def spec(self, model: str) -> ModelSpec:
        spec = self.config.model_spec(model)
        if spec is None or spec.monitoring is None:
            raise JobError(f"model {model!r} has no monitoring section in the config")
        return spec

    # -- reference ------------------------------------------------------------
    def reference(self, spec: ModelSpec) -> Any:
        """The model's reference profile: from the store while its source is unchanged
        (same file size and time, same window, same features), else computed and stored."""
        from mlwatch.stats.profile import DatasetProfile

        version = spec.version or ANY_VERSION
        tag = reference_tag(spec)
        key = (spec.name, version, tag)
        if key in self._references:
            return self._references[key]
        stored_tag = self.store.profile_tag(spec.name, version, "reference")
        file_gone = bool(spec.monitoring and spec.monitoring.reference
                         and not Path(spec.monitoring.reference).exists())
        if stored_tag is not None and (stored_tag == tag or file_gone):
            if stored_tag != tag:
                log.warning("%s: reference file %s is gone; using the stored reference profile",
                            spec.name, spec.monitoring.reference if spec.monitoring else "")
            profile = DatasetProfile.from_json(self.store.profiles(spec.name, version,
                                                                   "reference")[-1][2])
        else:
            data, start, end = self._reference_data(spec)
            types = {f.name: f.type for f in spec.features if f.sensitive != "drop"} or None
            if types:
                data = {name: data[name] for name in types if name in data}
                if missing := [name for name in types if name not in data]:
                    raise JobError(f"{spec.name}: the reference has no column "
                                   f"{', '.join(missing)}")
            profile = DatasetProfile.from_reference(self._redacted(spec, data), types)
            self.store.put_profile(spec.name, version, "reference", start, end,
                                   profile.to_json(), tag=tag)
            log.info("reference profile of %s: %d rows, %d features", spec.name, profile.rows,
                     len(profile.types))
        self._references = {k: v for k, v in self._references.items() if k[:2] != key[:2]}
        self._references[key] = profile
        return profile

    def _redacted(self, spec: ModelSpec, data: Any) -> Any:
        """A file reference gets the redaction served events get, so a hashed feature is
        compared hash to hash (the store's events are redacted already)."""
        hashed = [f.name for f in spec.features if f.sensitive == "hash"]
        if not hashed or not spec.monitoring or not spec.monitoring.reference:
            return data
        from mlwatch.redact import Redactor, load_or_create_key

        redactor = Redactor([spec], key=load_or_create_key(self.config.hash_key,
                                                            self.config.data_dir))
        columns = dict(data)
        for name in hashed:
            columns[name] = [None if v is None or v != v else redactor.hash_value(v)
                             for v in list(columns[name])]
        return columns

    def _reference_data(self, spec: ModelSpec) -> tuple[Any, int, int]:
        mon = spec.monitoring
        assert mon is not None
        if mon.reference:
            table = read_table(mon.reference)
            return {str(c): table[c].to_numpy() for c in table.columns}, 0, 0
        if mon.reference_window:
            since = _ts_us(mon.reference_window[0], f"{spec.name}: reference.since")
            until = _ts_us(mon.reference_window[1], f"{spec.name}: reference.until")
            names = [f.name for f in spec.features] or self._feature_names(spec.name, since, until)
            cols = self.store.feature_columns(spec.name, names, since_us=since, until_us=until,
                                              version=spec.version)
            if not names or not any(v is not None for col in cols.values() for v in col):
                raise JobError(f"{spec.name}: the reference window holds no features")
            return cols, since, until
        raise JobError(f"{spec.name}: no reference (set reference: <file> or {{since, until}})")

    def _feature_names(self, model: str, since: int, until: int) -> list[str]:
        sample = self.store.events(model, since_us=since, until_us=until, limit=200)
        return sorted({k for e in sample for k in (e.get("features") or {})})

    # -- drift ----------------------------------------------------------------
    def drift(self, model: str, window: tuple[int, int] | None = None) -> dict[str, Any]:
        """Drift of the last window (or of ``window``, ``[start, end)`` in µs), per version."""
        from mlwatch.stats.drift import compare_profiles

        spec = self.spec(model)
        mon = spec.monitoring
        assert mon is not None
        ref = self.reference(spec)
        start, end = window or window_bounds(mon, self.clock())
        out: dict[str, Any] = {}
        for version in self._versions(model, start, end):
            if spec.version is not None and version != spec.version:
                continue
            current = self._window_profile(ref, model, version, start, end)
            report = compare_profiles(ref, current, method=mon.method, alpha=mon.alpha,
                                      correction=mon.correction, min_effect=mon.min_effect,
                                      drift_share=mon.drift_share).to_dict()
            report["rows"] = current.rows
            self.store.put_result(model, version, "drift", start, end, report)
            self._export_drift(model, version, report)
            drifted = [f["name"] for f in report["features"] if f["drifted"]]
            log.info("drift %s %s [%s, %s): %d rows, share %.2f%s", model, version,
                     _iso(start), _iso(end), current.rows, report["drift_share"],
                     f", drifted: {', '.join(drifted)}" if drifted else "")
            out[version] = report
        if not out:
            log.info("drift %s: no events in [%s, %s)", model, _iso(start), _iso(end))
        m = self.metrics
        self._retire(model, (m.drift_score, m.drift_detected, m.drift_share, m.dataset_drift))
        return out

    def _versions(self, model: str, start: int, end: int) -> list[str]:
        if self.config.window_source == "elasticsearch":
            from mlwatch.elastic import aggregations

            return aggregations.versions(self._es(), self.config.elasticsearch_namespace,
                                         model, start, end)
        return self.store.versions(model, since_us=start, until_us=end)

    def _window_profile(self, ref: Any, model: str, version: str, start: int, end: int) -> Any:
        """The window's profile on the reference's bins: Elasticsearch aggregations, or the
        store's events read as columns."""
        if self.config.window_source == "elasticsearch":
            from mlwatch.elastic import aggregations

            return aggregations.window_profile(
                self._es(), ref, namespace=self.config.elasticsearch_namespace, model=model,
                version=version, start_us=start, end_us=end)
        merged = self._merged_slices(ref, model, version, start, end)
        if merged is not None:
            return merged
        current = ref.new_window()
        current.update(self.store.feature_columns(model, list(ref.types), since_us=start,
                                                  until_us=end, version=version))
        return current

    def _merged_slices(self, ref: Any, model: str, version: str, start: int, end: int) -> Any:
        """The sidecar's slice profiles merged over the window, if they cover every event
        of it (same reference layout, same row count); else None."""
        from mlwatch.stats.profile import DatasetProfile

        slices = [s for s in self.store.profiles(model, version, "slice", since_us=start,
                                                 until_us=end) if s[1] <= end]
        if not slices:
            return None
        try:
            merged = ref.new_window()
            for _, _, body in slices:
                merged = merged.merge(DatasetProfile.from_json(body))
        except ValueError:  # built on another reference: not usable
            return None
        expected = self.store.count_with_features(model, since_us=start, until_us=end,
                                                  version=version)
        return merged if merged.rows == expected else None

    def _es(self) -> Any:
        if self._es_client is None:
            if not self.config.elasticsearch_url:
                raise JobError("window_source is elasticsearch but elasticsearch_url is unset")
            from mlwatch.elastic.client import make_client

            self._es_client = make_client(self.config)
        return self._es_client

    def _export_drift(self, model: str, version: str, report: dict[str, Any]) -> None:
        m = self.metrics
        for feature in report["features"]:
            score = feature["score"]
            self._set(m.drift_score, (model, version, feature["name"], feature["method"]),
                      math.nan if score is None else score)
            self._set(m.drift_detected, (model, version, feature["name"]),
                      1 if feature["drifted"] else 0)
        self._set(m.drift_share, (model, version), report["drift_share"])
        self._set(m.dataset_drift, (model, version), 1 if report["dataset_drift"] else 0)

    def _set(self, gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
        gauge.labels(*labels).set(value)
        self._written.add((id(gauge), labels))

    def _retire(self, model: str, gauges: tuple[Gauge, ...]) -> None:
        """Remove the model's series this run did not write: a version no longer served,
        a method the auto rule no longer picks. A stale 1 would keep an alert firing."""
        for gauge in gauges:
            for labels in list(self._series.get(id(gauge), set())):
                if labels[0] == model and (id(gauge), labels) not in self._written:
                    gauge.remove(*labels)
                    self._series[id(gauge)].discard(labels)
        for gauge_id, labels in self._written:
            self._series.setdefault(gauge_id, set()).add(labels)
        self._written = set()

    # -- KPIs -----------------------------------------------------------------
    def kpis(self, model: str, window: tuple[int, int] | None = None) -> dict[str, Any]:
        """KPIs of the last ``kpi_lookback`` windows, per version; late labels update them.
        With ``window`` (``[start, end)`` in µs): the KPIs of that one window."""
        from mlwatch.stats.kpi import compute_kpis

        spec = self.spec(model)
        mon = spec.monitoring
        assert mon is not None
        if window is None and mon.sliding:  # one window ending now; lookback is for tumbling
            window = window_bounds(mon, self.clock())
        if window is None:
            _, end = window_bounds(mon, self.clock())
            start = end - int(mon.window_s * 1_000_000) * mon.kpi_lookback
        else:
            start, end = window
        size_us = end - start if window is not None else int(mon.window_s * 1_000_000)
        out: dict[str, Any] = {}
        for version in self.store.versions(model, since_us=start, until_us=end):
            reports = []
            for w_start in range(start, end, size_us):  # one window in memory at a time
                w_end = min(w_start + size_us, end)
                rows = list(self.store.joined_predictions(model, since_us=w_start,
                                                          until_us=w_end, version=version))
                if rows:
                    # the stored prediction and label are already the values to score:
                    # prediction_field / label_field were applied by the client
                    reports.append(replace(compute_kpis(rows, task=spec.task,
                                                        score_field=spec.score_field,
                                                        classes=spec.classes,
                                                        min_samples=mon.kpi_min_samples),
                                           window_start_us=w_start, window_end_us=w_end))
            newest = None
            for rep in reports:  # window_kpis always sets the bounds
                w_start, w_end = int(rep.window_start_us or 0), int(rep.window_end_us or 0)
                self.store.put_result(model, version, "kpi", w_start, w_end, rep.to_dict())
                if rep.reason is None:
                    newest = rep
            if newest is not None:
                self._export_kpis(model, version, newest)
                out[version] = newest.to_dict()
                log.info("kpi %s %s [%s, %s): %s", model, version,
                         _iso(int(newest.window_start_us or 0)),
                         _iso(int(newest.window_end_us or 0)),
                         ", ".join(f"{k}={v.value:.4g}" for k, v in newest.kpis.items()
                                   if v.value is not None))
        m = self.metrics
        self._retire(model, (m.kpi, m.kpi_bound, m.kpi_samples))
        return out

    def _export_kpis(self, model: str, version: str, report: Any) -> None:
        m = self.metrics
        for name, kpi in report.kpis.items():
            if kpi.value is None:
                continue
            self._set(m.kpi, (model, version, name), kpi.value)
            for bound in ("lower", "upper"):
                if getattr(kpi, bound) is not None:
                    self._set(m.kpi_bound, (model, version, name, bound), getattr(kpi, bound))
        self._set(m.kpi_samples, (model, version), report.n_used)


def reference_tag(spec: ModelSpec) -> str:
    """A fingerprint of what a reference is built from: a changed file (size, time), window
    or feature list makes a new reference."""
    import hashlib
    import json

    mon = spec.monitoring
    source: dict[str, Any] = {"features": [(f.name, f.type, f.sensitive) for f in spec.features]}
    if mon is not None and mon.reference:
        try:
            st = Path(mon.reference).stat()
            source["file"] = [str(Path(mon.reference).resolve()), st.st_size, st.st_mtime_ns]
        except OSError:
            source["file"] = [mon.reference]
    elif mon is not None:
        source["window"] = mon.reference_window
    return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]


def read_table(path: str | Path) -> Any:
    """A CSV or Parquet file as a pandas DataFrame (Parquet needs pyarrow)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise JobError(f"reference file {path} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except ImportError as exc:
        raise JobError(f"reading {path} needs pyarrow: pip install pyarrow") from exc
    except Exception as exc:
        raise JobError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def _iso(us: int) -> str:
    from mlwatch.wire import format_ts

    return format_ts(us * 1000)
