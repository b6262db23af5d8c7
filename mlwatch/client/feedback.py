"""What the client sends beside events: ground truth and model registrations.

Both go through the current runtime's queue and worker, like events: the call returns
at once and never blocks. Malformed arguments raise
:class:`~mlwatch.errors.ValidationError` at the call; delivery problems never raise.
"""

from __future__ import annotations

from typing import Any

from mlwatch.client import runtime
from mlwatch.client.features import printable, to_jsonable
from mlwatch.dotted import pick_path
from mlwatch.errors import ValidationError
from mlwatch.settings import Config
from mlwatch.times import to_rfc3339
from mlwatch.tracking.uris import is_mlflow_uri
from mlwatch.wire import MAX_ID, validate_feedback, validate_registration


def log_feedback(request_id: Any, label: Any, *, model: str | None = None, ts: Any = None) -> None:
    """Record the ground truth for a prediction (possibly hours later); never blocks.

    ``request_id`` is the one the event carries (the event id when the monitor had no
    ``request_id=``); it is cleaned as the event's was (non-printable characters
    escaped, at most 256 characters), so the two still match. Malformed arguments
    raise ValidationError; delivery problems never raise.
    """
    rt = runtime.current()
    if rt.sink is None:
        return
    model = model or _default_model(rt.config)
    spec = rt.config.model_spec(model)
    if spec is not None and spec.label_field:  # the label lives inside a larger record
        try:
            label = pick_path(label, spec.label_field)
        except (KeyError, IndexError, AttributeError, TypeError):
            raise ValidationError(
                f"label_field {spec.label_field!r} of model {model!r} is not in the label",
                field="label",
            ) from None
    rec: dict[str, Any] = {
        "model": model,
        "request_id": None if request_id is None else printable(str(request_id), MAX_ID),
        "label": to_jsonable(label),
    }
    if ts is not None:
        rec["ts"] = to_rfc3339(ts)
    checked = validate_feedback(rec)
    checked.pop("ts_us", None)
    rt.sink.record_feedback(checked)


def _default_model(config: Config) -> str:
    """The ``model`` setting, or the one model spec of the configuration."""
    if config.model:
        return config.model
    if len(config.models) == 1:
        return config.models[0].name
    raise ValidationError(
        "no model: pass log_feedback(..., model=...) or set the model setting "
        "(configure(model=...) or MLWATCH_MODEL)",
        field="model",
    )


def register_model(
    model: str | None = None,
    version: str | None = None,
    *,
    task: str | None = None,
    params: dict[str, Any] | None = None,
    run_id: str | None = None,
    code_version: str | None = None,
) -> None:
    """Send a model version's identity and experiment parameters (POST /v1/models) now,
    instead of with its first events. Malformed arguments, and a version that is an MLflow
    model URI (resolved and registered by the worker), raise ValidationError."""
    rt = runtime.current()
    if rt.sink is None:
        return
    spec = rt.config.model_spec(model or rt.config.model or "")
    if is_mlflow_uri(version or rt.config.version or (spec.mlflow if spec else None)):
        raise ValidationError(
            "an MLflow model URI is registered by mlwatch itself, with the version MLflow "
            "names, once the first events are shipped; pass a version string here",
            field="version",
        )
    reg: dict[str, Any] = {
        "model": model or rt.config.model,
        "version": version or rt.config.version or "unknown",
        "params": to_jsonable(params or {}),
    }
    for key, value in (
        ("task", task),
        ("run_id", run_id or rt.config.run_id),
        ("code_version", code_version or rt.code_version()),
    ):
        if value is not None:
            reg[key] = value
    validate_registration(reg)
    rt.sink.register(reg)
