"""What every mlwatch dashboard shares: options, stable uids, the label selector of the
template variables, the variables themselves and the annotations.

Every model metric carries ``model``, ``version`` and ``environment`` (docs/contracts.md);
mlwatch's own metrics carry no environment unless a scrape config adds one (``labels:
{environment: prod}``), so the variable matches everything, an absent label included,
when set to All.

>>> uid("overview", "churn"), uid("overview", "fraud:v2")
('mlwatch-overview-churn', 'mlwatch-overview-fraud-v2-3e5109f0')
>>> selector(feature="tenure")
'model="$model",version=~"$version",environment=~"$environment",feature="tenure"'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as models

from mlwatch.alerting.rules import DEFAULT_RUNBOOK_URL
from mlwatch.errors import ConfigError

#: The uid of the Prometheus datasource the provisioning file creates; the datasource
#: variable starts on it, and a team with its own Prometheus picks that one instead.
PROMETHEUS_UID = "mlwatch-prometheus"
ELASTICSEARCH_UID = "mlwatch-elasticsearch"
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "mlwatch"
_UID_MAX = 40  # Grafana refuses longer dashboard uids


@dataclass(frozen=True)
class Options:
    """What the dashboards need beyond the config: names of the deployment around them."""

    job: str = "mlwatch"  # the Prometheus job that scrapes the sidecar
    runbook_url: str = DEFAULT_RUNBOOK_URL  # panels link to runbook_url#<alertname>
    prometheus_url: str = "http://prometheus:9090"  # written into the datasource file
    kibana_url: str = "http://kibana:5601"  # the events dashboard links to its saved search
    dashboards_path: str = "/var/lib/grafana/dashboards/mlwatch"  # where Grafana reads them
    source: str = "mlwatch.yaml"  # the config's file name, for the dashboards' descriptions


def uid(kind: str, model: str = "") -> str:
    """A dashboard uid that stays the same for the same model, so links and bookmarks
    survive a rebuild. A name Grafana cannot take as it is (other characters, too long)
    gets a short hash, which also keeps ``a:b`` and ``a-b`` apart."""
    base = f"mlwatch-{kind}" + (f"-{model}" if model else "")
    if re.fullmatch(r"[A-Za-z0-9_-]+", base) and len(base) <= _UID_MAX:
        return base
    digest = hashlib.sha256(model.encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", model).strip("-")[: _UID_MAX - len(kind) - 18]
    return f"mlwatch-{kind}-{slug}-{digest}"


@dataclass(frozen=True)
class Folder:
    """A Grafana folder mlwatch writes into (one per model or team)."""

    uid: str
    title: str

    @classmethod
    def named(cls, title: str) -> Folder:
        """The folder titled ``title``, its uid ``mlwatch-<slug>``:

        >>> Folder.named("Fraud team")
        Folder(uid='mlwatch-fraud-team', title='Fraud team')
        """
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "folder"
        return cls(f"mlwatch-{slug}"[:40].rstrip("-"), title)


#: mlwatch's own dashboards and alert rules, and the fleet's.
SHARED = Folder("mlwatch", "mlwatch")


def model_folders(models: list[str]) -> dict[str, Folder]:
    """Each model's folder; two models whose names give one folder (``a.b`` and ``a-b``)
    are a configuration error: their dashboards and rules would mix."""
    out: dict[str, Folder] = {}
    seen: dict[str, str] = {}
    for i, model in enumerate(models):
        folder = Folder.named(model)
        other = seen.setdefault(folder.uid, model)
        if other != model:
            raise ConfigError(
                f"models[{i}].name",
                f"{model!r} gives the same Grafana folder as {other!r} ({folder.uid})",
            )
        out[model] = folder
    return out


def selector(**extra: str) -> str:
    """The label matchers of a model panel: the dashboard's model, the versions and the
    environment chosen in the variables, then ``extra`` exactly."""
    parts = ['model="$model"', 'version=~"$version"', 'environment=~"$environment"']
    parts += [f'{key}="{value}"' for key, value in extra.items()]
    return ",".join(parts)


def dashboard(
    title: str,
    dash_uid: str,
    description: str,
    options: Options,
    *,
    source: db.DatasourceVariable | None = None,
) -> db.Dashboard:
    """An empty mlwatch dashboard: tags, time range, refresh, the datasource variable
    (``source``, Prometheus by default) and the link to the runbooks."""
    return (
        db.Dashboard(title)
        .uid(dash_uid)
        .description(description)
        .tags([TAG])
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("utc")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_variable(source or datasource_variable("prometheus", "Prometheus", PROMETHEUS_UID))
        .link(
            db.DashboardLink("Runbooks")
            .type(models.DashboardLinkType.LINK)
            .url(options.runbook_url)
            .icon("doc")
            .target_blank(True)
        )
        .link(
            db.DashboardLink("mlwatch dashboards")
            .type(models.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(False)
            .keep_time(True)
        )
    )


def datasource_variable(kind: str, label: str, start: str) -> db.DatasourceVariable:
    """The ``datasource`` variable: the datasources of type ``kind``, starting on the
    provisioned one (``start``); a team with its own picks that one instead."""
    return (
        db.DatasourceVariable("datasource")
        .label(label)
        .type(kind)
        .current(models.VariableOption(text=label, value=start))
    )


def model_variables(board: db.Dashboard, model: str) -> db.Dashboard:
    """``model`` fixed to the dashboard's model (the per-feature and per-KPI panels are
    this model's), ``version`` and ``environment`` chosen from what Prometheus has."""
    board.with_variable(db.ConstantVariable("model").value(model))
    info = f'mlwatch_model_info{{model="{model}"}}'
    board.with_variable(_label_variable("version", "Version", info))
    return board.with_variable(_label_variable("environment", "Environment", info))


def fleet_variables(board: db.Dashboard) -> db.Dashboard:
    """Models, versions and environment all chosen, every one by default."""
    board.with_variable(_label_variable("model", "Model", "mlwatch_model_info"))
    info = 'mlwatch_model_info{model=~"$model"}'
    board.with_variable(_label_variable("version", "Version", info))
    return board.with_variable(_label_variable("environment", "Environment", info))


def environment_variable(board: db.Dashboard) -> db.Dashboard:
    """The environment alone, for mlwatch's own metrics (no model on them)."""
    return board.with_variable(_label_variable("environment", "Environment", "up"))


def _label_variable(name: str, label: str, series: str) -> db.QueryVariable:
    """A multi-value variable over a label's values; All is ``.*``, which also matches a
    series without the label (an environment the scrape config does not set)."""
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({series}, {name})")
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(models.VariableOption(text="All", value="$__all"))
    )


class PromAnnotation(models.AnnotationQuery):
    """A Prometheus annotation: its query in ``target`` (where Grafana 11 keeps it) and
    the Prometheus datasource's own options, which the SDK's generic model leaves out."""

    def __init__(self, name: str, expr: str, color: str, title: str, tags: str) -> None:
        super().__init__(name=name, datasource=DATASOURCE, enable=True, icon_color=color)
        self.built_in = None
        self.query = expr
        self.title_format = title
        self.tag_keys = tags

    def to_json(self) -> dict[str, Any]:
        out = dict(super().to_json())
        out["target"] = {"expr": self.query, "refId": "Anno", "interval": "1m"}
        out.update(titleFormat=self.title_format, tagKeys=self.tag_keys, useValueForTime=False)
        return out


def version_annotation(model_matcher: str) -> PromAnnotation:
    """A mark where a new model version, code version or run started to be served: an
    info series that exists now and did not five minutes ago."""
    info = f"mlwatch_model_info{{{model_matcher}}}"
    return PromAnnotation(
        "Model version changes",
        f"{info} unless {info} offset 5m",
        "blue",
        "{{model}} {{version}} (code {{code_version}}, run {{run_id}})",
        "model,version",
    )


def retrain_annotation(model_matcher: str) -> PromAnnotation:
    """A mark where a retraining trigger of the dashboard's models ended (delivered,
    rejected, failed, suppressed or a dry run)."""
    return PromAnnotation(
        "Retrain triggers",
        f"sum by (model, target, result) "
        f"(increase(mlwatch_retrain_triggers_total{{{model_matcher}}}[5m])) > 0",
        "purple",
        "retrain trigger of {{model}} to {{target}}: {{result}}",
        "model,target,result",
    )


class _Built(Builder[models.AnnotationQuery]):
    """An annotation already made, handed to the dashboard builder."""

    def __init__(self, annotation: models.AnnotationQuery) -> None:
        self.annotation = annotation

    def build(self) -> models.AnnotationQuery:
        return self.annotation


def annotate(board: db.Dashboard, model_matcher: str) -> db.Dashboard:
    """Both annotations on ``board``."""
    board.annotation(_Built(version_annotation(model_matcher)))
    return board.annotation(_Built(retrain_annotation(model_matcher)))
