"""The drift and KPI jobs: read a window, compute, record, export.

One run of a job, for one model:

- **drift**: the reference profile (:mod:`.reference`) against the profile of the
  current window (:mod:`.windows`) for each version served in it, with the model's drift
  options; statistics from profiles and from raw data agree (:mod:`mlwatch.stats`).
- **kpi**: predictions joined to their labels for the last ``kpi_lookback`` windows,
  recomputed every run so a label that arrives late updates its own window; the gauges
  show the newest window with at least ``kpi_min_samples`` labelled predictions.

Results go to the store (``GET /v1/models/{model}/status`` shows the newest), to the
gauges (:mod:`.results`), to the log and, when set up, to MLflow (:mod:`.mlflow_results`,
never waited for).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry

from mlwatch.alerting.retrain import Retrainer
from mlwatch.errors import ConfigError, JobError
from mlwatch.scheduler.explain import empty_drift, empty_kpis
from mlwatch.scheduler.mlflow_results import MlflowResults, wanted
from mlwatch.scheduler.reference import References
from mlwatch.scheduler.results import ResultMetrics
from mlwatch.scheduler.windows import kpi_windows, window_bounds, window_source
from mlwatch.settings import Config, ModelSpec
from mlwatch.store import EmbeddedStore
from mlwatch.times import format_us

log = logging.getLogger("mlwatch.jobs")


class Jobs:
    """Runs the jobs of the configured models against one store."""

    def __init__(
        self,
        config: Config,
        store: EmbeddedStore,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = ResultMetrics(registry, config.environment)
        self.clock = clock
        self.references = References(config, store)
        self.windows = window_source(config, store)
        #: Where results are written back to MLflow (None: not published).
        self.mlflow = MlflowResults(config, store, registry) if wanted(config) else None
        #: Where results are checked against the models' retrain conditions (when set).
        self.retrainer: Retrainer | None = None
        #: Why the last run of a job (``("drift", model)``) found nothing, None when it did.
        self.empty: dict[tuple[str, str], str | None] = {}
        self._logged: dict[tuple[str, str, str], tuple[int, int]] = {}  # window told, by job

    def prepare(self) -> None:
        """Check at startup what can be checked then: each file reference is read now
        (or its stored profile found), so a missing or unreadable file, or a listed
        feature the file does not have, is a configuration error at start instead of a
        failing job later. An MLflow reference is fetched now too, but an MLflow that
        does not answer (or lacks the run or file) is only a warning: it may come later.
        The newest stored results are put on the gauges, so a restarted process shows
        what the store holds before its first run."""
        problems = []
        for i, spec in enumerate(self.config.models):
            if spec.monitoring is None:
                continue
            if spec.monitoring.reference or spec.monitoring.reference_mlflow:
                try:
                    self.reference(spec)
                except JobError as exc:
                    if not self.references.mlflow.unreachable(exc):
                        at = "reference.mlflow" if spec.monitoring.reference_mlflow else "reference"
                        problems.append((f"models[{i}].{at}", str(exc)))
                    else:  # MLflow may come up later: each drift run asks again
                        log.warning("%s; the drift job will ask again at each run", exc)
            self._restore_gauges(spec.name)
        if problems:
            more = "".join(f"; {key}: {why}" for key, why in problems[1:])
            raise ConfigError(problems[0][0], problems[0][1] + more)

    def _restore_gauges(self, model: str) -> None:
        from mlwatch.stats.kpi import KPIReport

        latest = self.store.latest_results(model)
        for version, report in latest.get("drift", {}).items():
            self.metrics.drift(model, version, report)
        for version, report in latest.get("kpi", {}).items():
            restored = KPIReport.from_dict(report)
            self.metrics.kpis(model, version, restored)
            self._label_delays(model, version, restored)
        self.metrics.retire_drift(model)
        self.metrics.retire_kpis(model)

    def _tell(
        self, job: str, model: str, version: str, window: tuple[int, int], msg: str, *args: Any
    ) -> None:
        """Log a window's result once at INFO (a window recomputed on every run of a
        shorter schedule is logged again at DEBUG only)."""
        key = (job, model, version)
        level = logging.DEBUG if self._logged.get(key) == window else logging.INFO
        self._logged[key] = window
        log.log(level, msg, *args)

    def close(self) -> None:
        """Ship the results queued for MLflow (within ``mlflow_timeout_s``) and release
        the Elasticsearch client, if one was opened. Idempotent."""
        if self.mlflow is not None:
            self.mlflow.close(self.config.mlflow_timeout_s)
        self.windows.close()

    def monitored(self) -> list[ModelSpec]:
        return [m for m in self.config.models if m.monitoring is not None]

    def spec(self, model: str) -> ModelSpec:
        spec = self.config.model_spec(model)
        if spec is None or spec.monitoring is None:
            raise JobError(f"model {model!r} has no monitoring section in the config")
        return spec

    def reference(self, spec: ModelSpec) -> Any:
        """The model's reference profile (see :mod:`.reference`)."""
        return self.references.get(spec)

    def drift(self, model: str, window: tuple[int, int] | None = None) -> dict[str, Any]:
        """Drift of the last window (or of ``window``, ``[start, end)`` in µs), per version."""
        from mlwatch.stats.drift import compare_profiles

        spec = self.spec(model)
        mon = spec.monitoring
        assert mon is not None
        ref = self.reference(spec)
        start, end = window or window_bounds(mon, self.clock())
        out: dict[str, Any] = {}
        for version in self.windows.versions(model, start, end):
            if spec.version is not None and version != spec.version:
                continue
            current = self.windows.profile(ref, model, version, start, end)
            report = compare_profiles(
                ref,
                current,
                method=mon.method,
                alpha=mon.alpha,
                correction=mon.correction,
                min_effect=mon.min_effect,
                drift_share=mon.drift_share,
            ).to_dict()
            report["rows"] = current.rows
            self.store.put_result(model, version, "drift", start, end, report)
            self.metrics.drift(model, version, report)
            if self.mlflow is not None:
                self.mlflow.drift(spec, version, (start, end), report)
            drifted = [f["name"] for f in report["features"] if f["drifted"]]
            self._tell(
                "drift",
                model,
                version,
                (start, end),
                "drift %s %s [%s, %s): %d rows, share %.2f%s",
                model,
                version,
                format_us(start),
                format_us(end),
                current.rows,
                report["drift_share"],
                f", drifted: {', '.join(drifted)}" if drifted else "",
            )
            out[version] = report
            if self.retrainer is not None:
                self.retrainer.check_drift(model, version, report, (start, end))
        why = None if out else empty_drift(self.store, model, start, end, self.config.window_source)
        self.empty[("drift", model)] = why
        if why:
            self._tell("drift", model, "", (start, end), "%s", why)
        self.metrics.retire_drift(model)
        return out

    def kpis(self, model: str, window: tuple[int, int] | None = None) -> dict[str, Any]:
        """KPIs of the last ``kpi_lookback`` windows, per version; late labels update them.
        With ``window`` (``[start, end)`` in µs): the KPIs of that one window."""
        spec = self.spec(model)
        mon = spec.monitoring
        assert mon is not None
        windows = kpi_windows(mon, self.clock(), window)
        out: dict[str, Any] = {}
        for version in self.store.versions(
            model,
            since_us=windows[0][0],
            until_us=windows[-1][1],
            environment=self.config.environment,
        ):
            newest, reported = None, []
            for start, end in windows:  # one window in memory at a time
                report = self._window_kpis(spec, version, start, end)
                if report is not None and report.reason is None:
                    newest = report
                    reported.append((start, end, report.to_dict()))
            if self.mlflow is not None:
                self.mlflow.kpis(spec, version, reported)
            if self.retrainer is not None:
                self.retrainer.check_kpis(model, version, reported)
            if newest is not None:
                self.metrics.kpis(model, version, newest)
                self._label_delays(model, version, newest)
                out[version] = newest.to_dict()
                self._tell(
                    "kpi",
                    model,
                    version,
                    (int(newest.window_start_us or 0), int(newest.window_end_us or 0)),
                    "kpi %s %s [%s, %s): %s",
                    model,
                    version,
                    format_us(int(newest.window_start_us or 0)),
                    format_us(int(newest.window_end_us or 0)),
                    ", ".join(
                        f"{k}={v.value:.4g}" for k, v in newest.kpis.items() if v.value is not None
                    ),
                )
        start, end = windows[0][0], windows[-1][1]
        why = None if out else empty_kpis(self.store, model, start, end, mon.kpi_min_samples)
        self.empty[("kpi", model)] = why
        if why:
            self._tell("kpi", model, "", (start, end), "%s", why)
        self.metrics.retire_kpis(model)
        return out

    def compare(self, model: str) -> dict[str, Any]:
        """The canary / A-B comparison of the model's ``compare`` section (see
        :mod:`.compare_job`), on the gauges; empty with fewer than two versions."""
        from mlwatch.scheduler.compare_job import compare_served

        spec = self.spec(model)
        result, why = compare_served(
            self.store,
            spec,
            now_us=int(self.clock() * 1_000_000),
            environment=self.config.environment,
        )
        self.empty[("compare", model)] = why
        if result is not None:
            self.metrics.comparison(model, result)
            self._tell(
                "compare", model, result["candidate"], (0, 0), "compare %s %s vs %s: %s",
                model, result["candidate"], result["baseline"], result["verdict"],
            )  # fmt: skip
        elif why:
            self._tell("compare", model, "", (0, 0), "%s", why)
        self.metrics.retire_compare(model)
        return result or {}

    def _label_delays(self, model: str, version: str, report: Any) -> None:
        """The delay of the labels behind the KPIs on the gauges (those of ``report``)."""
        from mlwatch.stats.kpi.delays import delay_quantiles

        delays = self.store.label_delays_us(
            model,
            since_us=int(report.window_start_us),
            until_us=int(report.window_end_us),
            version=version,
            environment=self.config.environment,
        )
        self.metrics.label_delays(model, version, delay_quantiles(delays))

    def _window_kpis(self, spec: ModelSpec, version: str, start: int, end: int) -> Any:
        """The KPI report of one window (stored), or None when it holds no prediction."""
        from mlwatch.stats.kpi import compute_kpis

        assert spec.monitoring is not None
        rows = list(
            self.store.joined_predictions(
                spec.name,
                since_us=start,
                until_us=end,
                version=version,
                environment=self.config.environment,
            )
        )
        if not rows:
            return None
        # the stored prediction and label are already the values to score:
        # prediction_field / label_field were applied by the client
        report = replace(
            compute_kpis(
                rows,
                task=spec.task,
                score_field=spec.score_field,
                classes=spec.classes,
                min_samples=spec.monitoring.kpi_min_samples,
            ),
            window_start_us=start,
            window_end_us=end,
        )
        self.store.put_result(spec.name, version, "kpi", start, end, report.to_dict())
        return report
