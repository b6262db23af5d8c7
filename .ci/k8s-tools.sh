#!/usr/bin/env bash
# Build the Kubernetes tools the manifest tests use, once per version, into
# ~/.cache/mlwatch/k8s-<version>/bin: kube-apiserver and kubectl (from k8s.io/kubernetes
# through a wrapper module: `go install` refuses its replace directives) and helm.
# etcd comes from Debian (etcd-server). Prints the bin directory.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
HELM_VERSION="${HELM_VERSION:-v4.3.2}"
OUT="${HOME}/.cache/mlwatch/k8s-${K8S_VERSION}-helm-${HELM_VERSION}"
BIN="${OUT}/bin"
if [ -x "${BIN}/kube-apiserver" ] && [ -x "${BIN}/kubectl" ] && [ -x "${BIN}/helm" ]; then
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
echo "${BIN}"
