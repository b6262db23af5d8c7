"""The harness itself: each check passes a valid object and fails a broken one, with the
error in its output (a check that cannot fail proves nothing about the manifests)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubernetes.cluster import Cluster, ToolError, Tools, copy_doc, load_docs

pytestmark = pytest.mark.integration

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: harness-check
  namespace: mlwatch-harness
  labels: {app.kubernetes.io/name: harness-check}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: harness-check}
  template:
    metadata:
      labels: {app.kubernetes.io/name: harness-check}
    spec:
      containers:
        - name: sidecar
          image: localhost/mlwatch-sidecar:test
          ports: [{name: metrics, containerPort: 9100}]
          resources:
            requests: {cpu: 50m, memory: 64Mi}
            limits: {memory: 128Mi}
"""

SERVICE_MONITOR = """\
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: harness-check, namespace: mlwatch-harness}
spec:
  selector:
    matchLabels: {app.kubernetes.io/name: harness-check}
  endpoints:
    - port: metrics
      interval: 30s
"""

POD_MONITOR = """\
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: harness-check, namespace: mlwatch-harness}
spec:
  selector:
    matchLabels: {app.kubernetes.io/name: harness-check}
  podMetricsEndpoints:
    - port: metrics
      path: /metrics
"""


def dump(*docs: dict[str, Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def broken(text: str, change: Callable[[dict[str, Any]], None]) -> str:
    [doc] = load_docs(text)
    doc = copy_doc(doc)
    change(doc)
    return dump(doc)


def container(doc: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return c


def test_valid_objects_pass_every_check(cluster: Cluster) -> None:
    stream = DEPLOYMENT + "---\n" + SERVICE_MONITOR + "---\n" + POD_MONITOR
    ok, out = cluster.dry_run(stream)
    assert ok, out
    assert "serverside-applied (server dry run)" in out
    ok, out = cluster.validate(DEPLOYMENT)
    assert ok, out
    assert cluster.crd_check(stream) == []
    # the dry run stored nothing
    assert cluster.kubectl("get", "deployment", "-n", "mlwatch-harness", "-o", "name").stdout == ""


def _string_replicas(d: dict[str, Any]) -> None:
    d["spec"]["replicas"] = "2"


def _unknown_field(d: dict[str, Any]) -> None:
    container(d)["imagePullPolicyy"] = "Never"


def _selector_mismatch(d: dict[str, Any]) -> None:
    d["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "other"}


def _bad_quantity(d: dict[str, Any]) -> None:
    container(d)["resources"]["limits"]["memory"] = "128Mx"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (_string_replicas, ".spec.replicas: expected numeric (int or float), got string"),
        (_unknown_field, "imagePullPolicyy: field not declared in schema"),
        (_selector_mismatch, "`selector` does not match template `labels`"),
        (_bad_quantity, "quantities must match the regular expression"),
    ],
    ids=["string-replicas", "unknown-field", "selector-mismatch", "bad-quantity"],
)
def test_server_dry_run_fails_a_broken_deployment(
    cluster: Cluster, change: Callable[[dict[str, Any]], None], error: str
) -> None:
    ok, out = cluster.dry_run(broken(DEPLOYMENT, change))
    assert not ok
    assert error in out, out


def test_server_dry_run_reports_every_schema_error_at_once(cluster: Cluster) -> None:
    def both(d: dict[str, Any]) -> None:
        _string_replicas(d)
        _unknown_field(d)

    ok, out = cluster.dry_run(broken(DEPLOYMENT, both))
    assert not ok
    assert ".spec.replicas: expected numeric" in out and "imagePullPolicyy" in out, out


def test_kubernetes_validate_strict_catches_unknown_fields_and_types(k8s_tools: Tools) -> None:
    ok, out = k8s_tools.validate(broken(DEPLOYMENT, _unknown_field))
    assert not ok
    assert "imagePullPolicyy" in out and "deployment/harness-check" in out, out
    ok, out = k8s_tools.validate(broken(DEPLOYMENT, _string_replicas))
    assert not ok
    assert "spec.replicas: '2' is not of type 'integer'" in out, out


def test_kubernetes_validate_misses_what_only_the_server_checks(k8s_tools: Tools) -> None:
    # why the dry run is needed too: semantics and custom resources pass this check
    for text in (broken(DEPLOYMENT, _selector_mismatch), broken(DEPLOYMENT, _bad_quantity)):
        ok, out = k8s_tools.validate(text)
        assert ok, out
    ok, out = k8s_tools.validate(broken(SERVICE_MONITOR, lambda d: d["spec"].update(bogus=1)))
    assert ok and "Couldn't find schema for kind ServiceMonitor" in out, out


def _sm_unknown_field(d: dict[str, Any]) -> None:
    d["spec"]["endpoints"][0]["scrapeIntervall"] = "30s"


def _sm_wrong_type(d: dict[str, Any]) -> None:
    d["spec"]["endpoints"][0]["interval"] = 30


def _pm_unknown_field(d: dict[str, Any]) -> None:
    d["spec"]["podMetricsEndpoints"][0]["scrapeIntervall"] = "30s"


@pytest.mark.parametrize(
    ("text", "change", "offline_error", "server_error"),
    [
        (
            SERVICE_MONITOR,
            _sm_unknown_field,
            "ServiceMonitor/harness-check: spec.endpoints.0: Additional properties are not "
            "allowed ('scrapeIntervall' was unexpected)",
            ".spec.endpoints[0].scrapeIntervall: field not declared in schema",
        ),
        (
            SERVICE_MONITOR,
            _sm_wrong_type,
            "ServiceMonitor/harness-check: spec.endpoints.0.interval: 30 is not of type 'string'",
            ".spec.endpoints[0].interval: expected string",
        ),
        (
            POD_MONITOR,
            _pm_unknown_field,
            "PodMonitor/harness-check: spec.podMetricsEndpoints.0: Additional properties are "
            "not allowed ('scrapeIntervall' was unexpected)",
            ".spec.podMetricsEndpoints[0].scrapeIntervall: field not declared in schema",
        ),
    ],
    ids=["servicemonitor-unknown-field", "servicemonitor-wrong-type", "podmonitor-unknown-field"],
)
def test_monitors_are_checked_against_the_crds(
    cluster: Cluster,
    text: str,
    change: Callable[[dict[str, Any]], None],
    offline_error: str,
    server_error: str,
) -> None:
    bad = broken(text, change)
    assert cluster.crd_check(bad) == [offline_error]
    ok, out = cluster.dry_run(bad)
    assert not ok
    assert server_error in out, out


def test_crd_check_wants_the_required_fields(k8s_tools: Tools) -> None:
    [doc] = load_docs(SERVICE_MONITOR)
    del doc["spec"]["selector"]
    assert k8s_tools.crd_check([doc]) == [
        "ServiceMonitor/harness-check: spec: 'selector' is a required property"
    ]
    doc = {"apiVersion": "monitoring.coreos.com/v1alpha1", "kind": "ScrapeConfig"}
    [error] = k8s_tools.crd_check([doc])
    assert error.startswith("ScrapeConfig: no CRD for monitoring.coreos.com/v1alpha1")


def test_dry_run_in_a_given_namespace(cluster: Cluster) -> None:
    [doc] = load_docs(DEPLOYMENT)
    del doc["metadata"]["namespace"]
    ok, out = cluster.dry_run(dump(doc), namespace="mlwatch-harness-2")
    assert ok, out
    assert "mlwatch-harness-2" in cluster.kubectl_ok("get", "namespaces", "-o", "name")


def test_kustomize_renders_an_overlay(k8s_tools: Tools, cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "deployment.yaml").write_text(DEPLOYMENT)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "namePrefix: kz-\n"
        "resources: [deployment.yaml]\n"
    )
    [doc] = load_docs(k8s_tools.kustomize(tmp_path))
    assert doc["metadata"]["name"] == "kz-harness-check"
    ok, out = cluster.dry_run(dump(doc))
    assert ok, out
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(ToolError, match=r"missing\.yaml"):
        k8s_tools.kustomize(tmp_path)


def _chart(root: Path, template: str) -> Path:
    chart = root / "harness-chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: harness-chart\nversion: 0.1.0\ndescription: harness check\n"
        "icon: https://example.invalid/icon.png\n"
    )
    (chart / "values.yaml").write_text("replicas: 1\nmemory: 128Mi\n")
    (chart / "templates" / "deployment.yaml").write_text(template)
    return chart


CHART_TEMPLATE = DEPLOYMENT.replace("replicas: 1", "replicas: {{ .Values.replicas }}").replace(
    "limits: {memory: 128Mi}", "limits: {memory: {{ .Values.memory | quote }}}"
)


def test_helm_template_and_lint(k8s_tools: Tools, cluster: Cluster, tmp_path: Path) -> None:
    chart = _chart(tmp_path, CHART_TEMPLATE)
    ok, out = k8s_tools.helm_lint(chart)
    assert ok, out
    [doc] = load_docs(k8s_tools.helm_template(chart, values={"replicas": 3}))
    assert doc["spec"]["replicas"] == 3
    ok, out = cluster.dry_run(dump(doc))
    assert ok, out
    # a value that renders into a broken manifest: helm passes it, the server does not
    rendered = k8s_tools.helm_template(chart, values={"memory": "128Mx"})
    ok, out = cluster.dry_run(rendered)
    assert not ok and "quantities must match" in out, out


def test_helm_fails_a_template_that_does_not_parse(k8s_tools: Tools, tmp_path: Path) -> None:
    chart = _chart(
        tmp_path, CHART_TEMPLATE.replace("{{ .Values.replicas }}", "{{ .Values.replicas")
    )
    ok, out = k8s_tools.helm_lint(chart)
    assert not ok and "deployment.yaml" in out, out
    with pytest.raises(ToolError, match="helm template failed"):
        k8s_tools.helm_template(chart)


def test_stop_ends_every_process_and_frees_the_ports(k8s_bin: Path, tmp_path: Path) -> None:
    with Cluster(k8s_bin, tmp_path) as c:
        assert c.start_seconds["kube-apiserver"] < 60
        procs = [proc for _, proc, _ in c.procs]
        ports = (c.port, c.etcd_port, c.etcd_peer_port)
    assert all(proc.returncode is not None for proc in procs)
    assert c.procs == []
    for port in ports:
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))
