"""Multi-window, multi-burn-rate alerts on a model's service-level objectives.

An SLO of 99.9 % over 30 days leaves an error budget of 0.1 %. The burn rate is the error
ratio divided by the budget: at 1x the budget lasts the 30 days, at 14.4x it is gone in
about two days. Each alert looks at a long window, which makes it significant, and a
short one, which makes it stop soon after the problem does (the Google SRE workbook,
"Alerting on SLOs"):

- page: 14.4x over 1h and 5m (2 % of the budget spent in an hour), or 6x over 6h and
  30m (5 % in six hours);
- ticket: 3x over 1d and 2h (10 % in a day), or 1x over 3d and 6h.

The error ratio of each window is a recording rule, ``model_version:mlwatch_slo_errors:
ratio_rate<window>{slo}``, so the alerts and dashboards read one series each:

- availability: calls with ``status="error"`` among ``mlwatch_predictions_total``;
- latency: calls slower than the threshold, from ``mlwatch_prediction_latency_seconds``'s
  bucket at that bound;
- quality: ``outcome="wrong"`` among ``mlwatch_labelled_predictions_total``, the labelled
  predictions the sidecar scores as feedback joins its event.

>>> [(b.factor, b.long, b.short) for b in PAGE]
[(14.4, '1h', '5m'), (6.0, '6h', '30m')]
"""

from __future__ import annotations

from dataclasses import dataclass

from mlwatch.alerting.rules import Options, Rule, alert, number, percent
from mlwatch.settings.alerts import SLOSpec

RECORD = "model_version:mlwatch_slo_errors:ratio_rate"
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
PERIOD_DAYS = 30


@dataclass(frozen=True)
class Burn:
    """One window pair of a burn-rate alert: both ratios above ``factor`` x the budget."""

    factor: float
    long: str
    short: str


PAGE = (Burn(14.4, "1h", "5m"), Burn(6.0, "6h", "30m"))
TICKET = (Burn(3.0, "1d", "2h"), Burn(1.0, "3d", "6h"))
ALERT_NAMES = {
    "availability": "MlwatchAvailabilityBudgetBurn",
    "latency": "MlwatchLatencyBudgetBurn",
    "quality": "MlwatchQualityBudgetBurn",
}
_WHAT = {
    "availability": "failed calls",
    "latency": "calls slower than {threshold}",
    "quality": "wrong labelled predictions",
}


def error_ratio(slo: SLOSpec, model: str, window: str, match: str = "") -> str:
    """The PromQL of the share of bad events of ``slo`` over ``window``, per version and
    environment (``match``: more label matchers, such as a dashboard's variables). A model
    without any bad event has a ratio of 0 rather than no series."""
    sel = f'model="{model}"' + (f",{match}" if match else "")
    if slo.name == "latency":
        le = repr(float(slo.threshold_s or 0.0))  # as the sidecar writes the bucket bound
        good = f'mlwatch_prediction_latency_seconds_bucket{{{sel},le="{le}"}}'
        total = f"mlwatch_prediction_latency_seconds_count{{{sel}}}"
        return (
            f"1 - (\n  sum by (model, version, environment) (rate({good}[{window}]))\n/\n"
            f"  sum by (model, version, environment) (rate({total}[{window}]))\n)"
        )
    metric, bad = (
        ("mlwatch_predictions_total", 'status="error"')
        if slo.name == "availability"
        else ("mlwatch_labelled_predictions_total", 'outcome="wrong"')
    )
    total = f"sum by (model, version, environment) (rate({metric}{{{sel}}}[{window}]))"
    return (
        f"(\n  sum by (model, version, environment) (rate({metric}{{{sel},{bad}}}[{window}]))\nor\n"
        f"  0 * {total}\n)\n/\n{total}"
    )


def recording_rules(slo: SLOSpec, model: str) -> list[Rule]:
    """The error ratio of ``slo`` over every window an alert reads."""
    return [
        Rule(expr=error_ratio(slo, model, w), record=f"{RECORD}{w}", labels={"slo": slo.name})
        for w in WINDOWS
    ]


def burn_alerts(slo: SLOSpec, model: str, options: Options, retrain: bool) -> list[Rule]:
    """The page and the ticket alert of ``slo``; ``retrain``: both carry retrain="true"."""
    budget = 1.0 - slo.objective
    threshold = _threshold(slo.threshold_s)
    what = _WHAT[slo.name].format(threshold=threshold)
    extra = {"slo": slo.name, **({"retrain": "true"} if retrain else {})}
    out = []
    for severity, pairs in (("page", PAGE), ("ticket", TICKET)):
        legs = [_leg(slo.name, model, pair, budget) for pair in pairs]
        spent = " or ".join(
            f"{number(p.factor)}x over {p.long} and {p.short} "
            f"(budget gone in {_exhaustion(p.factor)})"
            for p in pairs
        )
        out.append(
            alert(
                ALERT_NAMES[slo.name],
                "\nor\n".join(legs),
                options=options,
                severity=severity,
                labels=extra,
                summary=f"{{{{ $labels.model }}}} {{{{ $labels.version }}}} burns its "
                f"{slo.name} error budget ({severity})",
                description=f"Model {{{{ $labels.model }}}} version {{{{ $labels.version }}}}: "
                f"{what} are {{{{ $value | humanizePercentage }}}} over {pairs[0].long} or "
                f"{pairs[1].long}, against an objective of {percent(slo.objective)} over "
                f"{PERIOD_DAYS} days (budget {percent(budget)}): {spent}.",
            )
        )
    return out


def _leg(name: str, model: str, pair: Burn, budget: float) -> str:
    sel = f'{{model="{model}",slo="{name}"}}'
    bound = f"({number(pair.factor)} * {number(budget)})"
    return f"(\n  {RECORD}{pair.long}{sel} > {bound}\nand\n  {RECORD}{pair.short}{sel} > {bound}\n)"


def _exhaustion(factor: float) -> str:
    """How long the 30-day budget lasts at ``factor``: what makes a burn rate urgent."""
    hours = PERIOD_DAYS * 24 / factor
    return f"{hours:.0f}h" if hours < 72 else f"{hours / 24:.0f}d"


def _threshold(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"
