"""MLflow model URIs as mlwatch accepts them, parsed without MLflow.

Parsing is standard-library only so that settings and ``@monitor`` can check a URI at
configuration time, and label events with a provisional version, without importing
MLflow. Stages (``models:/churn/Production``) are refused: MLflow deprecated them, and
an alias says the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlwatch.errors import TrackingError

EXPECTED = "expected models:/<name>/<version>, models:/<name>@<alias> or runs:/<run_id>/<path>"
STAGES = ("none", "staging", "production", "archived")  # MLflow's deprecated stages
_CREDENTIALS = re.compile(r"(?<=://)[^/\s@]+@")


@dataclass(frozen=True)
class ModelURI:
    """A parsed model URI: a registered version, an alias, or a run's artifact path."""

    text: str
    kind: str  # "version" | "alias" | "run"
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    path: str | None = None


def is_mlflow_uri(text: object) -> bool:
    """Whether ``text`` is meant as an MLflow model URI (a version string otherwise).

    >>> is_mlflow_uri("models:/churn@champion"), is_mlflow_uri("1.2.0"), is_mlflow_uri(3)
    (True, False, False)
    """
    return isinstance(text, str) and text.startswith(("models:/", "runs:/"))


def parse_model_uri(text: str) -> ModelURI:
    """``text`` parsed, or a :class:`TrackingError` that names it and what is wrong.

    >>> parse_model_uri("models:/churn@champion").alias
    'champion'
    >>> parse_model_uri("models:/churn/x")
    Traceback (most recent call last):
    mlwatch.errors.TrackingError: models:/churn/x: the version 'x' is not an integer; ...
    """
    if not isinstance(text, str) or not text:
        raise _bad(str(text), "empty")
    if any(c.isspace() for c in text):
        raise _bad(text, "it contains whitespace")
    if text.startswith("runs:/"):
        return _run(text)
    if not text.startswith("models:/"):
        raise _bad(text, "not a models:/ or runs:/ URI")
    rest = text[len("models:/") :]
    if "@" in rest:
        name, _, alias = rest.partition("@")
        _check_name(text, name)
        if not alias or "/" in alias or "@" in alias:
            raise _bad(text, f"the alias {alias!r} is empty or has a path after it")
        return ModelURI(text, "alias", name=name, alias=alias)
    name, _, version = rest.partition("/")
    _check_name(text, name)
    if not version:
        raise _bad(text, "no version after the name")
    if version.lower() in STAGES:
        raise _bad(text, f"stages ({version!r}) are not supported: give the version an alias")
    if not version.isdigit() or not version.isascii():
        raise _bad(text, f"the version {version!r} is not an integer")
    return ModelURI(text, "version", name=name, version=str(int(version)))


def _run(text: str) -> ModelURI:
    run_id, _, path = text[len("runs:/") :].partition("/")
    if not run_id:
        raise _bad(text, "the run id is empty")
    return ModelURI(text, "run", run_id=run_id, path=path.strip("/") or None)


def _check_name(text: str, name: str) -> None:
    if not name:
        raise _bad(text, "the registered model name is empty")


def _bad(text: str, what: str) -> TrackingError:
    return TrackingError(f"{text or '(empty)'}: {what}; {EXPECTED}")


def provisional_version(uri: ModelURI) -> str:
    """What events carry as their version until MLflow has answered.

    >>> [provisional_version(parse_model_uri(u)) for u in ("models:/a/3", "models:/a@b")]
    ['3', '@b']
    """
    if uri.kind == "version":
        return str(uri.version)
    if uri.kind == "alias":
        return f"@{uri.alias}"
    return str(uri.run_id)


def mask(text: str) -> str:
    """``text`` with the user and password of any URL in it hidden: tracking URIs may
    carry them (``https://user:secret@mlflow``), and messages end up in logs.

    >>> mask("no answer from https://bob:s3cret@mlflow:5000/api")
    'no answer from https://***@mlflow:5000/api'
    """
    return _CREDENTIALS.sub("***@", text)
