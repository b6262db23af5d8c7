#!/usr/bin/env bash
# Build the Kubernetes tools the manifest tests use, once per version, into
# ~/.cache/mlwatch/k8s-<version>/bin: kube-apiserver and kubectl (from k8s.io/kubernetes
# through a wrapper module: `go install` refuses its replace directives) and helm.
# etcd comes from Debian (etcd-server). Also copies the Prometheus Operator's ServiceMonitor
# and PodMonitor CRDs (Go module github.com/prometheus-operator/prometheus-operator,
# Apache-2.0) into <bin>/../crds. Prints the bin directory.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
HELM_VERSION="${HELM_VERSION:-v4.3.2}"
PROM_OPERATOR_VERSION="${PROM_OPERATOR_VERSION:-v0.85.0}"
OUT="${HOME}/.cache/mlwatch/k8s-${K8S_VERSION}-helm-${HELM_VERSION}"
BIN="${OUT}/bin"
CRDS="${OUT}/crds"
CRD_FILES=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_podmonitors.yaml)

crds() {
    # idempotent: the version file says which release the copies come from
    if [ -f "${CRDS}/VERSION" ] && [ "$(cat "${CRDS}/VERSION")" = "${PROM_OPERATOR_VERSION}" ]; then
        return 0
    fi
    local module="github.com/prometheus-operator/prometheus-operator@${PROM_OPERATOR_VERSION}"
    local dir
    dir="$(cd / && go mod download -json "${module}" | sed -n 's/^\t"Dir": "\(.*\)",\?$/\1/p')"
    if [ -z "${dir}" ] || [ ! -d "${dir}" ]; then
        echo "go mod download ${module} gave no directory" >&2
        exit 1
    fi
    mkdir -p "${CRDS}"
    local f
    for f in "${CRD_FILES[@]}"; do
        cp "${dir}/example/prometheus-operator-crd/${f}" "${CRDS}/${f}.tmp"
        chmod 0644 "${CRDS}/${f}.tmp"
        mv "${CRDS}/${f}.tmp" "${CRDS}/${f}"
    done
    cp "${dir}/LICENSE" "${CRDS}/LICENSE" && chmod 0644 "${CRDS}/LICENSE"
    echo "${PROM_OPERATOR_VERSION}" > "${CRDS}/VERSION"
}

if [ -x "${BIN}/kube-apiserver" ] && [ -x "${BIN}/kubectl" ] && [ -x "${BIN}/helm" ]; then
    crds
    echo "${BIN}"
    exit 0
fi
mkdir -p "${BIN}" "${OUT}/src"
cd "${OUT}/src"
export GOFLAGS=-mod=mod
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
staging="v0.${K8S_VERSION#v1.}"
if [ ! -f go.mod ]; then
    go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" >/dev/null
    mod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${K8S_VERSION}.mod"
    {
        echo "module example.invalid/mlwatch-k8s-tools"
        echo "go 1.24.0"
        echo "require k8s.io/kubernetes ${K8S_VERSION}"
        echo "replace ("
        grep -oE "^\s*k8s.io/[a-z0-9-]+ => ./staging" "${mod}" | awk -v v="${staging}" '{print "\t"$1" => "$1" "v}'
        echo ")"
    } > go.mod.tmp
    mv go.mod.tmp go.mod
fi
ldflags="-X k8s.io/component-base/version.gitVersion=${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
for cmd in kube-apiserver kubectl; do
    if [ ! -x "${BIN}/${cmd}" ]; then
        echo "building ${cmd} ${K8S_VERSION} (minutes, once)" >&2
        go get "k8s.io/kubernetes/cmd/${cmd}@${K8S_VERSION}" >&2
        go build -ldflags "${ldflags}" -o "${BIN}/${cmd}.tmp" "k8s.io/kubernetes/cmd/${cmd}"
        mv "${BIN}/${cmd}.tmp" "${BIN}/${cmd}"
    fi
done
if [ ! -x "${BIN}/helm" ]; then
    echo "building helm ${HELM_VERSION}" >&2
    GOBIN="${BIN}" go install "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}"
fi
crds
echo "${BIN}"
