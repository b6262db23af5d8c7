"""sidecar/kubernetes/ rendered as a user renders it (each overlay, each component on the
base), then checked three ways: ``kubernetes-validate --strict``, the Prometheus Operator
CRD schemas, and a server-side dry run on a real kube-apiserver. Then what the manifests
promise: the native sidecar, its probes, the security context of every container, sizes,
no Secret in Git. A broken manifest fails each check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO
from tests.kubernetes.cluster import Cluster, Tools, base_with, copy_doc, load_docs

pytestmark = pytest.mark.integration
ROOT = REPO / "sidecar" / "kubernetes"
OVERLAYS = ["base", "overlays/dev", "overlays/prod"]
COMPONENTS = ["classic-sidecar", "elasticsearch", "fluent-bit", "prometheus-operator", "proxy-mode"]


def with_component(tools: Tools, component: str, tmp: Path) -> str:
    """The base with one component, as an overlay of the user's would add it."""
    return tools.kustomize(base_with(tmp / component, ROOT, component))


def rendered(tools: Tools, name: str, tmp: Path) -> str:
    return tools.kustomize(ROOT / name) if name in OVERLAYS else with_component(tools, name, tmp)


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return dict(deployment["spec"]["template"]["spec"])


@pytest.mark.parametrize("name", OVERLAYS + COMPONENTS)
def test_every_overlay_and_component_passes_the_three_checks(
    name: str, k8s_tools: Tools, cluster: Cluster, tmp_path: Path
) -> None:
    text = rendered(k8s_tools, name, tmp_path)
    ok, out = k8s_tools.validate(text)
    assert ok, out
    assert k8s_tools.crd_check(text) == []
    ok, out = cluster.dry_run(text)
    assert ok, out
    assert not any(d["kind"] == "Secret" for d in load_docs(text))  # secrets never in Git


def test_the_sidecar_is_native_and_probed_so_a_sink_outage_keeps_the_model_serving(
    k8s_tools: Tools, tmp_path: Path
) -> None:
    spec = pod_spec(load_docs(k8s_tools.kustomize(ROOT / "base")))
    [sidecar] = spec["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["MLWATCH_TOKEN_FILE"].startswith("/var/run/secrets/mlwatch/")
    model = spec["containers"][0]
    assert {e["name"]: e.get("value") for e in model["env"]}["MLWATCH_SIDECAR_URL"] == (
        "http://127.0.0.1:8765"
    )
    classic = pod_spec(load_docs(with_component(k8s_tools, "classic-sidecar", tmp_path)))
    assert not classic.get("initContainers")
    assert [c["name"] for c in classic["containers"]] == ["model", "mlwatch-sidecar"]
    assert "restartPolicy" not in classic["containers"][1]


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_container_is_locked_down_and_sized(
    name: str, k8s_tools: Tools, tmp_path: Path
) -> None:
    spec = pod_spec(load_docs(rendered(k8s_tools, name, tmp_path)))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    for container in spec.get("initContainers", []) + spec["containers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def _bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    return int(quantity[:-2]) * units[quantity[-2:]]


RATE = 10  # predictions/s a pod's volume is sized for (docs/kubernetes.md, "Sizes")
EVENT_BYTES = 1024  # in the store, an event of 20 features (about 780 B measured)


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_spool_and_the_store_fit_the_volume(
    name: str, k8s_tools: Tools, tmp_path: Path
) -> None:
    """At spool_max_bytes the sidecar refuses; past the volume the kubelet would evict the
    pod: the full spool and retention_days of events at RATE must fit."""
    docs = load_docs(rendered(k8s_tools, name, tmp_path))
    config = yaml.safe_load(
        next(d for d in docs if d["kind"] == "ConfigMap")["data"]["mlwatch.yaml"]
    )
    spool = next(v for v in pod_spec(docs)["volumes"] if v["name"] == "spool")
    if "emptyDir" in spool:
        size = _bytes(spool["emptyDir"]["sizeLimit"])
    else:
        claim = spool["ephemeral"]["volumeClaimTemplate"]["spec"]
        size = _bytes(claim["resources"]["requests"]["storage"])
    store = RATE * 86400 * config["retention_days"] * EVENT_BYTES
    assert config["spool_max_bytes"] + store <= size * 0.9, (config, size)


def test_a_broken_manifest_fails_each_check(
    k8s_tools: Tools, cluster: Cluster, tmp_path: Path
) -> None:
    docs = load_docs(k8s_tools.kustomize(ROOT / "overlays/prod"))
    deployment = copy_doc(next(d for d in docs if d["kind"] == "Deployment"))
    deployment["spec"]["replicas"] = "three"
    text = yaml.safe_dump(deployment)
    assert not k8s_tools.validate(text)[0]
    ok, out = cluster.dry_run(text)
    assert not ok and "replicas" in out

    monitor = copy_doc(next(d for d in docs if d["kind"] == "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = 30
    assert k8s_tools.crd_check([monitor])
    ok, out = cluster.dry_run(yaml.safe_dump(monitor))
    assert not ok and "interval" in out

    mismatch = copy_doc(next(d for d in docs if d["kind"] == "Deployment"))
    mismatch["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "other"
    ok, out = cluster.dry_run(yaml.safe_dump(mismatch))
    assert not ok and "selector" in out
