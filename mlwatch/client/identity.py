"""Who produced an event: model, version, code version, run id.

The code version answers "which code made this prediction?" when a model
regresses after a deploy. In order: ``code_version`` from the settings
(``MLWATCH_CODE_VERSION``, the config file or ``configure()``); else the git
commit of the working directory, asked ONCE per process with a short timeout,
from the shipper's worker and never on the calling thread; else the mlwatch
version (better than nothing, and says so by its shape).

Resolution never produces what the wire format refuses: versions, run ids and code
versions have non-printable characters escaped and are cut at ``wire.MAX_NAME``.
:func:`fallback_key` is the identity of last resort, for when resolving fails.

>>> resolve_code_version("abc123")
'abc123'
>>> Identity("iris", "3", "abc123").key
('iris', '3')
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlwatch.client.features import printable
from mlwatch.tracking.uris import is_mlflow_uri, parse_model_uri, provisional_version
from mlwatch.wire import DEFAULT_ENVIRONMENT, MAX_NAME, NAME_RE

if TYPE_CHECKING:
    from mlwatch.client.site import Site
    from mlwatch.settings import Config

FALLBACK_VERSION = "0.1.0"
GIT_TIMEOUT_S = 2.0
_SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")

_lock = threading.Lock()
_git: list[str | None] = []  # empty: not asked yet; [None]: asked, no answer
_version: list[str] = []


def package_version() -> str:
    """The installed mlwatch version (importlib.metadata is imported only when asked)."""
    if not _version:
        try:
            from importlib.metadata import PackageNotFoundError, version

            try:
                _version.append(version("mlwatch"))
            except PackageNotFoundError:
                _version.append(FALLBACK_VERSION)
        except Exception:  # pragma: no cover - broken metadata must not break monitoring
            _version.append(FALLBACK_VERSION)
    return _version[0]


def git_commit(cwd: str | None = None, *, timeout: float = GIT_TIMEOUT_S) -> str | None:
    """``git rev-parse HEAD`` of ``cwd`` (default: the working directory), or None.

    Never raises: no git binary, no repository, a timeout all give None.
    """
    import subprocess  # here, not at import: 2-3 ms that most processes never need

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or os.getcwd(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and _SHA_RE.fullmatch(sha) else None


def cached_git_commit() -> str | None:
    """:func:`git_commit` of the working directory, run at most once per process."""
    with _lock:
        if not _git:
            _git.append(git_commit())
        return _git[0]


def resolve_code_version(configured: str | None) -> str:
    if configured:
        return printable(str(configured), MAX_NAME) or package_version()
    return cached_git_commit() or package_version()


@dataclass(frozen=True)
class Identity:
    """The identity fields every event of one decorated function carries."""

    model: str
    version: str
    code_version: str
    run_id: str | None = None
    labels: dict[str, str] | None = None
    environment: str = DEFAULT_ENVIRONMENT  # the setting's (checked when it was loaded)
    prediction_field: str | None = None  # from the model spec, when @monitor has no prediction=
    mlflow: str | None = None  # the MLflow model URI that names the version, if any
    params: dict[str, Any] | None = field(default=None, compare=False)  # MLflow's, once resolved

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.version)


def default_model_name(func_name: str) -> str:
    """A valid model name from a function name (used when no model is configured).

    >>> default_model_name("<lambda>")
    'lambda'
    """
    name = re.sub(r"[^A-Za-z0-9_.:-]", "", func_name).lstrip("_.:-")[:MAX_NAME]
    return name or "model"


def resolve(site: Site, config: Config, code_version: str) -> Identity:
    """Monitor arguments first, then the settings, then defaults. A version that is an
    MLflow model URI gives its provisional version ('@champion') until MLflow answers
    (:mod:`mlwatch.client.mlflow_names`)."""
    model = site.model or config.model or default_model_name(site.name)
    if not NAME_RE.fullmatch(model):  # config.model is checked by configure(); env is not
        model = default_model_name(model)
    spec = config.model_spec(model)
    raw = site.version or config.version or (spec.mlflow if spec else None)
    uri = str(raw) if is_mlflow_uri(raw) else None
    shown = provisional_version(parse_model_uri(uri)) if uri else str(raw or "")
    version = printable(shown, MAX_NAME) or "unknown"
    run_id = site.run_id or config.run_id
    return Identity(
        model=model,
        version=version,
        mlflow=uri,
        code_version=code_version,
        run_id=(printable(str(run_id), MAX_NAME) or None) if run_id else None,
        labels=site.labels,
        environment=config.environment,
        prediction_field=spec.prediction_field if spec else None,
    )


def fallback_key(site: Site) -> tuple[str, str]:
    """(model, version) of a site whose identity cannot be resolved; never raises.

    >>> from mlwatch.client.site import Site
    >>> fallback_key(Site(name="predict", model="bad name!", version="2"))
    ('predict', '2')
    """
    try:
        model = site.model
        if not (isinstance(model, str) and NAME_RE.fullmatch(model)):
            model = default_model_name(str(site.name))
        version = site.version if isinstance(site.version, str) else ""
        return model, printable(version, MAX_NAME) or "unknown"
    except Exception:  # pragma: no cover - defensive: a Site is plain data
        return "model", "unknown"


def fallback_identity(site: Site) -> Identity:
    """The identity used when :func:`resolve` failed: the fallback key, no run id."""
    model, version = fallback_key(site)
    return Identity(model=model, version=version, code_version=package_version())


def registration(
    ident: Identity, task: str | None, params: dict[str, Any] | None
) -> dict[str, Any]:
    """The POST /v1/models record for a model version (``wire.validate_registration``)."""
    known = ident.params or ({"mlflow": {"uri": ident.mlflow}} if ident.mlflow else {})
    reg: dict[str, Any] = {
        "model": ident.model,
        "version": ident.version,
        "code_version": ident.code_version,
        "params": {**known, **(params or {})},
    }
    if ident.run_id:
        reg["run_id"] = ident.run_id
    if task:
        reg["task"] = task
    return reg
