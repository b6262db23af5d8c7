"""Session fixtures for the Kubernetes manifest tests: ``k8s_tools`` (the offline checks)
and ``cluster`` (etcd plus a real kube-apiserver, started once). Missing tools skip the
tests locally and fail them in CI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kubernetes.cluster import Cluster, Tools, Unavailable, skip_or_fail, tools_dir


@pytest.fixture(scope="session")
def k8s_bin() -> Path:
    """The directory holding kube-apiserver, kubectl and helm (built on first use)."""
    try:
        return tools_dir()
    except Unavailable as exc:
        skip_or_fail(str(exc))


@pytest.fixture(scope="session")
def k8s_tools(k8s_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Tools:
    """kubernetes-validate, the CRD schema check, kustomize and helm; no server."""
    return Tools(k8s_bin, tmp_path_factory.mktemp("k8s-tools"))


@pytest.fixture(scope="session")
def cluster(k8s_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd and kube-apiserver on free ports with the Prometheus Operator CRDs applied."""
    c = Cluster(k8s_bin, tmp_path_factory.mktemp("k8s-cluster"))
    try:
        c.start()
    except Unavailable as exc:
        skip_or_fail(str(exc))
    try:
        yield c
    finally:
        c.stop()
