"""Reference data from MLflow: a file among the artifacts of the run behind a model URI.

The file is downloaded once per run into ``cache_dir/<run id>/`` (a run's artifacts do
not change once logged, so the run id keys the cache), through a temporary directory
and ``os.replace`` so that a crash never leaves half a file. Its fingerprint names the
run, the path and the content, so a moved alias gives a new reference profile.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from mlwatch.errors import TrackingError
from mlwatch.tracking.identity import bounded, client, missing, resolve

SHOWN = 5  # artifacts listed when the one asked for is missing


def fetch_artifact(
    uri: str,
    artifact: str,
    tracking_uri: str | None,
    cache_dir: Path,
    *,
    timeout_s: float = 60.0,
    lookup_timeout_s: float = 10.0,
) -> tuple[Path, str]:
    """(local path, fingerprint ``<run id>/<artifact>/<sha256[:16]>``) of ``artifact`` of
    the run ``uri`` names; TrackingError naming both when it cannot be had. The lookup of
    the run waits at most ``lookup_timeout_s`` (and ``timeout_s``), the download
    ``timeout_s``."""
    rel = _relative(uri, artifact)
    identity = resolve(uri, tracking_uri, timeout_s=min(timeout_s, lookup_timeout_s))
    if identity.run_id is None:
        raise TrackingError(
            f"{uri}: version {identity.version} has no run to take {artifact!r} from"
        )
    run_id = identity.run_id
    target = Path(cache_dir) / run_id / rel
    if not target.is_file():
        bounded(
            uri, tracking_uri, timeout_s, lambda: _download(uri, run_id, rel, tracking_uri, target)
        )
    return target, f"{run_id}/{rel}/{_sha256(target)[:16]}"


def _relative(uri: str, artifact: str) -> str:
    """``artifact`` as a path inside the run; one that leaves it is refused."""
    path = PurePosixPath(artifact.strip("/"))
    if not artifact.strip("/") or ".." in path.parts or "\\" in artifact:
        raise TrackingError(f"{uri}: {artifact!r} is not a file path inside the run's artifacts")
    return str(path)


def _download(uri: str, run_id: str, rel: str, tracking_uri: str | None, target: Path) -> None:
    """Download into a temporary directory beside the target, then move it in place."""
    import mlflow.artifacts

    _check_exists(uri, run_id, rel, tracking_uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".download-", dir=target.parent)
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=rel, dst_path=tmp, tracking_uri=tracking_uri
        )
        if not Path(local).is_file():
            raise TrackingError(f"{uri}: {rel!r} of run {run_id} is a directory, not a file")
        os.replace(local, target)
    except Exception as exc:
        if isinstance(exc, TrackingError) or not missing(exc):
            raise
        raise _no_artifact(uri, run_id, rel, tracking_uri) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_exists(uri: str, run_id: str, rel: str, tracking_uri: str | None) -> None:
    """TrackingError if the run has no file ``rel`` (a download of a missing file fails
    in ways that differ between artifact stores)."""
    parent = str(PurePosixPath(rel).parent)
    listed = _listing(run_id, None if parent == "." else parent, tracking_uri)
    if rel not in listed:
        raise _no_artifact(uri, run_id, rel, tracking_uri)


def _listing(run_id: str, path: str | None, tracking_uri: str | None) -> list[str]:
    infos: Any = client(tracking_uri).list_artifacts(run_id, path)
    return [str(info.path) for info in infos]


def _no_artifact(uri: str, run_id: str, rel: str, tracking_uri: str | None) -> TrackingError:
    try:
        have = _listing(run_id, None, tracking_uri)
    except Exception:  # the listing is a hint; the missing artifact is the error
        have = []
    hint = ", ".join(repr(p) for p in have[:SHOWN]) + (", ..." if len(have) > SHOWN else "")
    return TrackingError(
        f"{uri}: run {run_id} has no artifact {rel!r}"
        + (f" (it has {hint})" if have else " (it has no artifacts)")
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
