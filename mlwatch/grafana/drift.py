"""A model's drift: each feature's score over time against its threshold, the features
drifted now, and the share of drifted features the dataset alert compares.

The score is the drift method's (``method`` label): a distance (Wasserstein, PSI, JS, …)
drifts at or above its threshold, drawn dashed; a test (KS, chi-square, …) drifts when its
p-value is below ``alpha``, and its statistic has no fixed line, so the table of drifted
features (``mlwatch_feature_drift_detected``) is what decides.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as models

from mlwatch.alerting.rules import percent
from mlwatch.grafana.common import Options, annotate, dashboard, model_variables, selector, uid
from mlwatch.grafana.panels import PanelBuilder, Query, graph, rows, runbook, thresholds
from mlwatch.settings import ModelSpec

#: Default thresholds of the distance methods (mlwatch.stats.registry; a test keeps them
#: equal); the auto rule's distances use AUTO_DISTANCE_THRESHOLD.
DISTANCE_THRESHOLDS = {
    "hellinger": 0.1,
    "js": 0.1,
    "kl": 0.1,
    "psi": 0.2,
    "tvd": 0.1,
    "wasserstein": 0.1,
}
AUTO_DISTANCE_THRESHOLD = 0.1


def drift(spec: ModelSpec, options: Options) -> models.Dashboard:
    """The drift dashboard of ``spec`` (a model with a monitoring section)."""
    assert spec.monitoring is not None
    board = dashboard(
        f"mlwatch / {spec.name} / drift",
        uid("drift", spec.name),
        f"Feature and dataset drift of model {spec.name} from the scheduler's drift job, "
        f"generated from {options.source} by mlwatch dashboards build.",
        options,
    )
    annotate(model_variables(board, spec.name), 'model="$model"')
    board.with_row(db.Row("Dataset"))
    for panel in dataset(spec, options):
        board.with_panel(panel)
    board.with_row(db.Row("Features"))
    for feature in spec.features:
        board.with_panel(feature_score(spec, feature.name, options))
    return board.build()


def threshold(spec: ModelSpec) -> float:
    """The line a distance score drifts at: the forced method's, or the auto rule's."""
    assert spec.monitoring is not None
    method = spec.monitoring.method
    return DISTANCE_THRESHOLDS.get(method or "", AUTO_DISTANCE_THRESHOLD)


def dataset(spec: ModelSpec, options: Options) -> list[PanelBuilder]:
    """The drift share over time against the model's ``drift_share``, the features
    flagged by the newest run, and their data quality."""
    assert spec.monitoring is not None
    share = spec.monitoring.drift_share
    if spec.alerts is not None and spec.alerts.drift_share is not None:
        share = spec.alerts.drift_share
    sel = selector()
    return [
        graph(
            "Dataset drift share",
            "Share of the model's features the drift job flagged in its newest window, "
            f"per version. At or above {percent(share)} (dashed) the dataset counts as "
            "drifted and the alert may start retraining: check whether the shift is real "
            "(a new client, a broken upstream feature) before letting a model learn it.",
            [Query(f"max by (version) (mlwatch_dataset_drift_share{{{sel}}})", "{{version}}")],
            unit="percentunit",
            steps=thresholds((None, "green"), (share, "red")),
            links=[runbook(options, "MlwatchDatasetDrift")],
        ),
        rows(
            "Drifted features",
            "The features the newest drift run flagged, per version. Look at each in the "
            "panels below and in the events (mlwatch events) to see what changed.",
            Query(f"max by (version, feature) (mlwatch_feature_drift_detected{{{sel}}}) == 1"),
            hide=("Time", "Value"),
            links=[runbook(options, "MlwatchFeatureDrift")],
        ),
        graph(
            "Data quality",
            "Share of each feature's values in the newest drift window that were missing, "
            "non-finite (+-inf), of the wrong type (invalid), or categories the reference "
            "never had (unseen), for the versions chosen. A share that jumps is usually an "
            "upstream change (a renamed field, a new category, a broken join), not a "
            "change in the world: fix the pipeline rather than retrain on it.",
            [
                Query(
                    f"max by (feature, kind) (mlwatch_feature_quality_ratio{{{sel}}})",
                    "{{feature}} {{kind}}",
                )
            ],
            unit="percentunit",
        ),
    ]


def feature_score(spec: ModelSpec, feature: str, options: Options) -> PanelBuilder:
    """One feature's score by version and method, with the distance threshold."""
    line = threshold(spec)
    return graph(
        f"Drift: {feature}",
        f"Drift score of {feature} in each window, per version and method. A distance "
        f"drifts at or above {line:g} (dashed); a test's statistic has no fixed line (it "
        "drifts when its p-value is below alpha; the Drifted features table shows it). A "
        "lasting rise means the inputs moved away from the reference.",
        [
            Query(
                f"max by (version, method) "
                f"(mlwatch_feature_drift_score{{{selector(feature=feature)}}})",
                "{{version}} {{method}}",
            )
        ],
        unit="none",
        steps=thresholds((None, "green"), (line, "red")),
        links=[runbook(options, "MlwatchFeatureDrift")],
        width=8,
    )
