"""Every PromQL expression of every generated dashboard panel (and annotation), run
against a real Prometheus that scraped a real sidecar after demo-like traffic.

The config is the example's (``alerts/example.mlwatch.yaml``: models churn and eta, the
same features, tasks, KPIs and SLOs, so the dashboards have the same panels), with
references written here, the jobs every second over a short window, and a dry-run
retraining target. The sidecar gets predictions (some failing), ground truth for most
of them, a drift on one feature of each model, a client's drop report and two manual
retraining requests; the scheduler in the sidecar runs the drift and KPI jobs; Prometheus
loads the rules ``mlwatch alerts build`` makes of the same config (the dashboards query
its recorded SLO series) and scrapes the sidecar every second.

Each expression, its Grafana variables filled in as the dashboard's defaults would be,
runs as an instant query. A query Prometheus refuses is always a failure; an empty
answer is one unless its panel is in :data:`ALLOWED_EMPTY`, with the reason. So a metric
renamed in the sidecar or misspelt in a panel fails here (the last test proves it).
``-s`` prints the summary.
"""

from __future__ import annotations

import contextlib
import json
import random
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.models import dashboard as sdk

from mlwatch.alerting.build import build_files
from mlwatch.alerting.rules import Options as RuleOptions
from mlwatch.grafana.build import PanelQuery, build_dashboards, panel_queries
from mlwatch.grafana.common import Options, PromAnnotation, uid
from mlwatch.settings import Config, load_config
from tests.alerting.providers import new_whsec
from tests.grafana.helpers import example
from tests.helpers import free_port, wait_until
from tests.integration.servers import PrometheusProcess, SidecarProcess, get_json_any

pytestmark = pytest.mark.integration

TOKEN = "live-queries-token-0123456789"
VERSION = "1"
N = 240  # predictions per model
ERRORS = 12  # of them failing
LABELLED = 200  # of them with ground truth

#: Panels whose queries may answer nothing after this run, and why. Keep it short: a
#: panel that can have data here should get it from the traffic instead.
ALLOWED_EMPTY: dict[tuple[str, str], str] = {
    # The counter only exists once a sink failed; a healthy run has no failure.
    ("mlwatch-health", "Sink errors"): "no sink fails in a healthy run",
    # mlwatch_sink_documents_total / _dead_letters_total are the Elasticsearch sink's;
    # this sidecar runs on the embedded store alone.
    ("mlwatch-health", "Sink documents"): "no Elasticsearch sink configured",
    # The example's churn logs {"label", "proba"} objects (score_field: proba); the
    # sidecar counts mlwatch_predicted_class_total for scalar predictions only.
    ("mlwatch-overview-churn", "Predicted classes"): "object predictions are not counted",
}

#: Grafana's values of the template variables when every option is chosen (All is .*).
ALL = ".*"


@dataclass
class Report:
    """What running the queries found."""

    run: int = 0
    with_data: int = 0
    allowed_empty: list[PanelQuery] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    needless: set[tuple[str, str]] = field(default_factory=set)  # allowed empty, has data


def every_query(boards: dict[str, sdk.Dashboard]) -> list[PanelQuery]:
    """The panels' queries, then the annotations' (as panel "annotation: <name>")."""
    out = panel_queries(boards)
    for board in boards.values():
        for annotation in (board.annotations.list_val if board.annotations else None) or []:
            if isinstance(annotation, PromAnnotation):
                name = f"annotation: {annotation.name}"
                out.append(PanelQuery(str(board.uid), name, annotation.query))
    return out


def models_of(config: Config) -> dict[str, str]:
    """The model of each model dashboard, by uid (fleet and health have none)."""
    return {
        uid(kind, spec.name): spec.name
        for spec in config.models
        for kind in ("overview", "drift", "performance")
    }


def expand(query: PanelQuery, models: dict[str, str]) -> str:
    """The expression as Grafana sends it: the model of the dashboard (every model on
    the fleet's), every version and environment."""
    expr = query.expr.replace("$model", models.get(query.dashboard, ALL))
    expr = expr.replace("$version", ALL).replace("$environment", ALL)
    assert "$" not in expr, f"a template variable this test does not fill: {expr}"
    return expr


def instant(prom: PrometheusProcess, promql: str) -> tuple[str | None, list[Any]]:
    """(error, result) of an instant query; the error of a query Prometheus refused."""
    url = f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    status, body = get_json_any(url)
    if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
        return f"HTTP {status}: {body}", []
    return None, list(body["data"]["result"])


def check(prom: PrometheusProcess, queries: list[PanelQuery], models: dict[str, str]) -> Report:
    report = Report()
    for q in queries:
        report.run += 1
        error, result = instant(prom, expand(q, models))
        where = f"{q.dashboard} / {q.panel}: {q.expr}"
        if error is not None:
            report.failures.append(f"{where}\n  refused: {error}")
        elif result:
            report.with_data += 1
            if (q.dashboard, q.panel) in ALLOWED_EMPTY:
                report.needless.add((q.dashboard, q.panel))
        elif (q.dashboard, q.panel) in ALLOWED_EMPTY:
            report.allowed_empty.append(q)
        else:
            report.failures.append(f"{where}\n  no data")
    return report


# -- the setup -----------------------------------------------------------------------


def write_references(tmp: Path, rng: random.Random) -> dict[str, Path]:
    churn = tmp / "churn-reference.csv"
    rows = ["tenure_months,monthly_charges,contract,payment_method"]
    rows += [",".join(map(str, churn_features(rng, drift=False).values())) for _ in range(1000)]
    churn.write_text("\n".join(rows) + "\n")
    eta = tmp / "eta-reference.csv"
    rows = ["distance_km,items,hour"]
    rows += [",".join(map(str, eta_features(rng, drift=False).values())) for _ in range(1000)]
    eta.write_text("\n".join(rows) + "\n")
    return {"churn": churn, "eta": eta}


def churn_features(rng: random.Random, *, drift: bool) -> dict[str, Any]:
    return {
        # drifted: customers much newer than in the reference
        "tenure_months": round(rng.gauss(4 if drift else 30, 3), 1),
        "monthly_charges": round(rng.gauss(70, 15), 2),
        "contract": rng.choice(["monthly", "yearly", "two_year"]),
        "payment_method": rng.choice(["card", "transfer", "check"]),
    }


def eta_features(rng: random.Random, *, drift: bool) -> dict[str, Any]:
    return {
        "distance_km": round(rng.gauss(5, 2), 2),
        "items": rng.randint(1, 6),
        # drifted: every order at dinner time
        "hour": "19" if drift else str(rng.randint(8, 22)),
    }


def live_config(tmp: Path, port: int, refs: dict[str, Path]) -> Path:
    """The example with these references, the jobs every second over the last five
    minutes, few labels needed for the KPIs, and a dry-run retraining target."""
    raw = example()
    raw["port"] = port
    raw.pop("elasticsearch_url", None)  # the Elasticsearch queries are tested on a real node
    for spec in raw["models"]:
        spec.update(reference=str(refs[spec["name"]]), schedule="1s", window="5m", sliding=True)
        spec["kpi"] = {**spec.get("kpi", {}), "min_samples": 50}
        spec["retrain"] = {"target": "hook", "on": [{"alert": "MlwatchFeatureDrift"}]}
        spec["retrain"]["dry_run"] = True
    (tmp / "hook.secret").write_text(new_whsec())
    raw["targets"] = [
        {
            "name": "hook",
            "kind": "webhook",
            "url": f"http://127.0.0.1:{free_port()}/hook",  # never called: dry run
            "secret_file": str(tmp / "hook.secret"),
        }
    ]
    path = tmp / "mlwatch.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def post(sc: SidecarProcess, path: str, body: Any, **headers: str) -> None:
    req = urllib.request.Request(
        sc.url + path,
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
            **headers,
        },
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status in (200, 202), (path, r.status)


def drive_traffic(sc: SidecarProcess, prom: PrometheusProcess, rng: random.Random) -> None:
    """Predictions of both models, the second half drifted, a few failing; ground truth
    for most; a client's drop report; two manual retraining requests per model. The predictions and
    the requests come in two parts with a scrape between them: the counters rise while
    Prometheus watches (a series that first appears with its whole count has a rate of
    zero)."""
    events: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    for i in range(N):
        drift = i >= N // 2
        failing = i % (N // ERRORS) == 0
        # churn: the probability of "leave" and the truth drawn from it
        p = round(rng.random(), 3)
        events.append(
            {
                "model": "churn",
                "version": VERSION,
                "request_id": f"churn-{i}",
                "latency_ms": rng.uniform(2, 40) if i % 10 else rng.uniform(300, 600),
                "status": "error" if failing else "ok",
                "features": churn_features(rng, drift=drift),
                "prediction": None if failing else {"label": _label(p), "proba": p},
            }
        )
        if not failing and i < LABELLED + ERRORS:
            truth = "leave" if rng.random() < p else "stay"
            feedback.append({"model": "churn", "request_id": f"churn-{i}", "label": truth})
        minutes = round(rng.uniform(10, 60), 1)
        events.append(
            {
                "model": "eta",
                "version": VERSION,
                "request_id": f"eta-{i}",
                "latency_ms": rng.uniform(1, 20),
                "status": "error" if failing else "ok",
                "features": eta_features(rng, drift=drift),
                "prediction": None if failing else minutes,
            }
        )
        if not failing and i < LABELLED + ERRORS:
            truth_min = round(minutes + rng.gauss(0, 4), 1)
            feedback.append({"model": "eta", "request_id": f"eta-{i}", "label": truth_min})
    report = [{"model": "churn", "version": VERSION, "reason": "queue_full", "count": 3}]
    first = 20
    post(sc, "/v1/events", events[:first], **{"X-Mlwatch-Dropped": json.dumps(report)})
    for model in ("churn", "eta"):
        post(sc, f"/v1/models/{model}/retrain", {"reason": "dashboard query test"})
    wait_until(
        lambda: (
            len(prom.query("sum by (model) (mlwatch_predictions_total)")) == 2
            and len(prom.query("sum by (model) (mlwatch_retrain_triggers_total)")) == 2
        ),
        timeout=30,
        what="the first predictions and retraining trigger scraped",
    )
    post(sc, "/v1/events", events[first:])
    post(sc, "/v1/feedback", feedback)
    for model in ("churn", "eta"):
        post(sc, f"/v1/models/{model}/retrain", {"reason": "dashboard query test, again"})


def _label(p: float) -> str:
    return "leave" if p >= 0.5 else "stay"


@dataclass
class Stack:
    prom: PrometheusProcess
    queries: list[PanelQuery]
    models: dict[str, str]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("live")
    rng = random.Random(11)
    port = free_port()
    path = live_config(tmp, port, write_references(tmp, rng))
    env = {"MLWATCH_TOKEN": TOKEN, "MLWATCH_CONFIG": str(path)}
    config = load_config(path, env=env)
    rules = tmp / "alerts"
    for name, text in build_files(config, RuleOptions(source=path.name)).items():
        (rules / name).parent.mkdir(parents=True, exist_ok=True)
        (rules / name).write_text(text)
    sc = SidecarProcess(tmp / "data", port=port, **env)
    token = tmp / "token"
    token.write_text(TOKEN)
    prom = PrometheusProcess(
        tmp,
        [
            {
                "job_name": "mlwatch",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                "authorization": {"type": "Bearer", "credentials_file": str(token)},
            }
        ],
        rule_files=[str(p) for p in sorted((rules / "rules").glob("*.yml"))],
    )
    try:
        sc.start()
        prom.start()
        drive_traffic(sc, prom, rng)
        yield Stack(prom, every_query(build_dashboards(config, Options())), models_of(config))
    finally:
        prom.stop()
        sc.stop()
        print("--- prometheus log (tail) ---\n" + prom.log()[-3000:])
        print("--- sidecar log (tail) ---\n" + sc.log()[-3000:])


# -- the tests -----------------------------------------------------------------------


def settled(stack: Stack) -> Report:
    """One round of the queries, polled until every panel that should have data has it
    (the jobs first run 10 s after the sidecar's start; a rate needs two scrapes). A
    refused query fails at once: waiting does not make it parse."""
    report = check(stack.prom, stack.queries, stack.models)
    assert not [f for f in report.failures if "refused:" in f], "\n".join(report.failures)
    return report


def test_every_panel_query_runs_and_has_data(stack: Stack) -> None:
    with_data = len(stack.queries) - sum(
        1 for q in stack.queries if (q.dashboard, q.panel) in ALLOWED_EMPTY
    )
    with contextlib.suppress(AssertionError):  # the report below says what is wrong
        wait_until(
            lambda: settled(stack).with_data >= with_data,
            timeout=40,  # settled in about 12 s; a failing run stays under a minute
            interval=1,
            what="data for every panel query",
        )
    report = check(stack.prom, stack.queries, stack.models)
    print(
        f"\n{report.run} queries (panels and annotations) run, {report.with_data} with data, "
        f"{len(report.allowed_empty)} allowed empty:"
    )
    for q in report.allowed_empty:
        print(f"  {q.dashboard} / {q.panel}: {ALLOWED_EMPTY[(q.dashboard, q.panel)]}")
    assert not report.failures, f"{len(report.failures)} failing:\n" + "\n".join(report.failures)
    assert report.run == len(stack.queries) > 0
    # the list stays honest: every panel in it exists and is still empty
    panels = {(q.dashboard, q.panel) for q in stack.queries}
    assert set(ALLOWED_EMPTY) <= panels, set(ALLOWED_EMPTY) - panels
    assert not report.needless, f"has data now, remove from ALLOWED_EMPTY: {report.needless}"


@pytest.mark.parametrize(
    ("panel", "metric", "renamed"),
    [
        (
            ("mlwatch-overview-churn", "Traffic"),
            "mlwatch_predictions_total",
            "mlwatch_prediction_total",
        ),
        (
            ("mlwatch-overview-eta", "Error-budget burn rate (1h)"),
            "model_version:mlwatch_slo_errors:ratio_rate1h",
            "model_version:mlwatch_slo_error:ratio_rate1h",
        ),
    ],
)
def test_a_renamed_metric_is_reported(
    stack: Stack, panel: tuple[str, str], metric: str, renamed: str
) -> None:
    [query, *_] = [q for q in stack.queries if (q.dashboard, q.panel) == panel]
    assert metric in query.expr
    wait_until(
        lambda: check(stack.prom, [query], stack.models).with_data == 1,
        timeout=60,
        interval=1,
        what=f"data for {panel}",
    )
    broken = replace(query, expr=query.expr.replace(metric, renamed))
    report = check(stack.prom, [broken], stack.models)
    assert report.with_data == 0
    assert report.failures == [f"{panel[0]} / {panel[1]}: {broken.expr}\n  no data"]


def test_an_expression_prometheus_refuses_is_reported(stack: Stack) -> None:
    [query, *_] = [q for q in stack.queries if q.panel == "Traffic"]
    broken = replace(query, expr=query.expr.replace("sum by (version, status) (", "sum by ("))
    report = check(stack.prom, [broken], stack.models)
    assert len(report.failures) == 1 and "refused: HTTP 400" in report.failures[0]
