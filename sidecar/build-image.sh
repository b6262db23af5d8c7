#!/usr/bin/env bash
# Build the sidecar image from wheels of this repository, with podman/buildah and no
# registry: the base is a Debian bookworm root filesystem made with mmdebstrap, cached under
# ~/.cache/mlwatch (keyed by BASE_KEY) and imported once. With a registry at hand, build
# sidecar/Containerfile with its default BASE instead.
#
#   sidecar/build-image.sh [TAG]        (default localhost/mlwatch-sidecar:<version>)
#
# Needs: podman, buildah, mmdebstrap (Debian packages), python3 with pip. DEBIAN_MIRROR
# overrides mmdebstrap's default mirror (deb.debian.org).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "${here}")"
version="$(cd "${repo}" && python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')"
tag="${1:-localhost/mlwatch-sidecar:${version}}"
base_key="${BASE_KEY:-bookworm-v1}"
base_image="localhost/mlwatch-base:${base_key}"
cache="${HOME}/.cache/mlwatch"
export CONTAINERS_CONF="${CONTAINERS_CONF:-${here}/containers.conf}"
mkdir -p "${cache}"

if ! podman image exists "${base_image}"; then
    tar="${cache}/base-${base_key}.tar"
    if [ ! -s "${tar}" ]; then
        echo "making the base root filesystem (mmdebstrap bookworm minbase, once)" >&2
        rm -rf "${tar}.tmp"
        mmdebstrap --quiet --format=tar --variant=minbase --include=python3,python3-venv,ca-certificates \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
            bookworm "${tar}.tmp" ${DEBIAN_MIRROR:+"${DEBIAN_MIRROR}"}
        mv "${tar}.tmp" "${tar}"
    fi
    podman import --quiet --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
        --change 'CMD ["/usr/bin/python3"]' "${tar}" "${base_image}" >/dev/null
fi

context="$(mktemp -d)"
trap 'rm -rf "${context}"' EXIT
echo "building wheels of mlwatch[sidecar,elasticsearch]" >&2
python3 -m pip wheel --quiet --wheel-dir "${context}/wheels" "${repo}[sidecar,elasticsearch]" >&2
cp "${here}/Containerfile" "${context}/Containerfile"
revision="$(git -C "${repo}" describe --always --dirty --abbrev=40 2>/dev/null || echo unknown)"
created="$(git -C "${repo}" log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)"
epoch="$(git -C "${repo}" log -1 --format=%ct 2>/dev/null || echo 0)"
echo "building ${tag}" >&2
buildah bud --quiet --isolation chroot --layers=false --timestamp "${epoch}" \
    --build-arg "BASE=${base_image}" --build-arg "VERSION=${version}" \
    --build-arg "REVISION=${revision}" --build-arg "CREATED=${created}" \
    -f "${context}/Containerfile" -t "${tag}" "${context}" >&2
echo "${tag}"
