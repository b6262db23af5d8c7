"""A model's serving health from the sidecar's counters: no traffic, failed calls, latency.

These are plain thresholds over five minutes, held for ``for``: what an on-call engineer
reads at a glance. The SLO alerts (:mod:`.slo`) judge the same counters against a budget.
"""

from __future__ import annotations

from mlwatch.alerting.rules import Options, Rule, alert, duration, number, percent
from mlwatch.settings.alerts import AlertSpec


def service_alerts(model: str, alerts: AlertSpec, options: Options) -> list[Rule]:
    """The no-traffic, error-ratio and latency alerts the section asks for."""
    out = []
    if alerts.no_traffic_s is not None:
        out.append(no_traffic(model, alerts.no_traffic_s, options))
    if alerts.error_ratio is not None:
        out.append(error_ratio(model, alerts.error_ratio, alerts.for_s, options))
    if alerts.latency_threshold_s is not None:
        out.append(
            latency(
                model, alerts.latency_quantile, alerts.latency_threshold_s, alerts.for_s, options
            )
        )
    return out


def no_traffic(model: str, for_s: float, options: Options) -> Rule:
    """No prediction at all for ``for_s``, summed over versions: a version replaced by
    another is not an outage, a model nobody calls any more is."""
    return alert(
        "MlwatchNoTraffic",
        f'sum by (model, environment) (rate(mlwatch_predictions_total{{model="{model}"}}[5m])) == 0',
        options=options,
        severity="ticket",
        for_s=for_s,
        summary="No predictions from {{ $labels.model }}",
        description="Model {{ $labels.model }} has recorded no prediction for "
        f"{duration(for_s)} (rate {{{{ $value }}}}/s): the service is down, or its "
        "clients cannot reach the sidecar.",
    )


def error_ratio(model: str, ratio: float, for_s: float, options: Options) -> Rule:
    """The share of calls that raised, per version (a new version that fails is the usual
    cause, and the version label says which)."""
    sel = f'model="{model}"'
    return alert(
        "MlwatchHighErrorRatio",
        f'sum by (model, version, environment) (rate(mlwatch_predictions_total{{{sel},status="error"}}[5m]))\n'
        f"/\nsum by (model, version, environment) (rate(mlwatch_predictions_total{{{sel}}}[5m]))\n"
        f"> {number(ratio)}",
        options=options,
        severity="ticket",
        for_s=for_s,
        summary="{{ $labels.model }} {{ $labels.version }} fails "
        "{{ $value | humanizePercentage }} of its calls",
        description="{{ $value | humanizePercentage }} of the calls of model "
        "{{ $labels.model }} version {{ $labels.version }} raised over 5m, above "
        f"{percent(ratio)}, for {duration(for_s)}.",
    )


def latency(
    model: str, quantile: float, threshold_s: float, for_s: float, options: Options
) -> Rule:
    """A latency quantile over five minutes above the threshold. Interpolated within a
    bucket, so it is an estimate; the latency SLO counts exactly at a bucket bound."""
    name = f"p{quantile * 100:g}"
    return alert(
        "MlwatchHighLatency",
        f"histogram_quantile({number(quantile)}, sum by (model, version, environment, le) "
        f'(rate(mlwatch_prediction_latency_seconds_bucket{{model="{model}"}}[5m])))\n'
        f"> {number(threshold_s)}",
        options=options,
        severity="ticket",
        for_s=for_s,
        summary=f"{{{{ $labels.model }}}} {{{{ $labels.version }}}} {name} latency "
        "{{ $value | humanizeDuration }}",
        description=f"The {name} latency of model {{{{ $labels.model }}}} version "
        "{{ $labels.version }} is {{ $value | humanizeDuration }} over 5m, above "
        f"{duration(threshold_s)}, for {duration(for_s)}.",
    )
