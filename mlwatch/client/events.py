"""From queued calls to wire-format events — on the worker, never on the calling thread.

The decorator's hot path appends one tuple per call (an :data:`Entry`)::

    (site, end_wall_ns, latency_ns, inputs, result, request_id, error, rows)

``inputs`` is :data:`NO_PAYLOAD` when the features were not kept (``capture=False``
or sampled out); ``result`` is None when ``capture=False``. So a sampled-out call
keeps its prediction, request id, latency and status, and ``capture=False`` keeps
counts, latency and status only. ``rows`` is the batch size (1 for single
predictions). Everything else — feature extraction, JSON conversion, ids
(``ids.event_ids``, one OS random call per batch), timestamps (``wire.format_ts``) —
happens here. Request ids and error names get non-printable characters escaped
(``features.printable``): the wire format refuses control characters in them.

Each part is guarded separately: a feature extractor that fails leaves
``features`` null and the event is still counted with its latency and status.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mlwatch.client import features as feat
from mlwatch.client.identity import Identity
from mlwatch.client.site import Site
from mlwatch.dotted import pick_path
from mlwatch.ids import event_ids
from mlwatch.logs import failures
from mlwatch.times import format_ts
from mlwatch.wire import DEFAULT_ENVIRONMENT, MAX_ID, MAX_NAME

NO_PAYLOAD: Any = type("NoPayload", (), {"__repr__": lambda self: "NO_PAYLOAD"})()

Entry = tuple[Any, int, int, Any, Any, Any, "str | None", int]
Extractor = Callable[[tuple[Any, ...], dict[str, Any]], Any]


def _safely(kind: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        failures.warning(
            kind,
            "mlwatch: %s failed (%s: %s); the event is kept without it",
            kind,
            type(exc).__name__,
            exc,
        )
        return None


def _request_ids(rid: Any, n: int) -> list[str | None]:
    if rid is None:
        return [None] * n
    if isinstance(rid, (list, tuple)) and len(rid) == n:
        return [None if r is None else feat.printable(str(r), MAX_ID) or None for r in rid]
    text = feat.printable(str(rid), MAX_ID)
    if n == 1:
        return [text or None]
    return [f"{text[: MAX_ID - 8]}:{i}" for i in range(n)]


def _prediction(site: Site, result: Any, ident: Identity) -> Any:
    if site.prediction is None and ident.prediction_field:
        return feat.to_jsonable(pick_path(result, ident.prediction_field))
    return feat.to_jsonable(feat.select(result, site.prediction))


def entry_events(entry: Entry, ident: Identity) -> tuple[list[dict[str, Any]], list[int]]:
    """The events of one call (several for a batch) and their start times in ns."""
    site, end_ns, lat_ns, inputs, result, rid, err, n = entry
    start = end_ns - lat_ns
    base: dict[str, Any] = {
        "ts": format_ts(start),
        "model": ident.model,
        "version": ident.version,
        "latency_ms": lat_ns / 1e6,
        "status": "error" if err else "ok",
        "code_version": ident.code_version,
    }
    if ident.environment != DEFAULT_ENVIRONMENT:  # else the sidecar's (or the pipeline's)
        base["environment"] = ident.environment
    if err:
        base["error"] = feat.printable(err, MAX_NAME) or "error"
    if ident.run_id:
        base["run_id"] = ident.run_id
    if ident.labels:
        base["labels"] = ident.labels
    kept = inputs is not NO_PAYLOAD  # features kept (not capture=False, not sampled out)
    predict = site.capture and not err  # the prediction is kept unless capture=False
    rids = _safely("request_id", _request_ids, rid, n) or [None] * n
    if not site.batch:
        base["request_id"] = rids[0]
        base["features"] = (
            _safely("features", feat.to_features, inputs, site.feature_names) if kept else None
        )
        base["prediction"] = (
            _safely("prediction", _prediction, site, result, ident) if predict else None
        )
        return [base], [start]
    rows = _batch_rows(site, inputs, n) if kept else [None] * n
    preds = _batch_predictions(site, result, ident, n) if predict else [None] * n
    out = []
    for i in range(n):
        ev = dict(base)
        ev["batch_size"] = n
        ev["request_id"] = rids[i]
        ev["features"] = rows[i]
        ev["prediction"] = preds[i]
        out.append(ev)
    return out, [start] * n


def _batch_rows(site: Site, inputs: Any, n: int) -> Sequence[Any]:
    """The features of each row of a batch call; null rows when they do not split."""
    got = _safely("features", feat.to_rows, inputs, site.feature_names)
    if got is not None and len(got) == n:
        return got  # type: ignore[no-any-return]
    if got is not None:
        failures.warning(
            "features.rows",
            "mlwatch: a batch input gave %d rows, expected %d; recording null features",
            len(got),
            n,
        )
    return [None] * n


def _batch_predictions(site: Site, result: Any, ident: Identity, n: int) -> Sequence[Any]:
    """The prediction of each row of a batch call; nulls when it does not split."""
    whole = _safely("prediction", _prediction, site, result, ident)
    split = feat.split_rows(whole, n)
    if split is not None:
        return split
    if whole is not None:
        failures.warning(
            "prediction.split",
            "mlwatch: the prediction of a batch of %d rows "
            "does not split into %d rows; recording null",
            n,
            n,
        )
    return [None] * n


def build(
    entries: Sequence[Entry],
    identity_of: Callable[[Site], Identity],
    on_error: Callable[[Entry, BaseException], None],
) -> list[dict[str, Any]]:
    """Events of many calls, with time-ordered ids (also the request id when none was given)."""
    events: list[dict[str, Any]] = []
    starts: list[int] = []
    for entry in entries:
        try:
            evs, ts = entry_events(entry, identity_of(entry[0]))
        except Exception as exc:  # a bug here must cost this call's events, not the batch
            on_error(entry, exc)
            continue
        events.extend(evs)
        starts.extend(ts)
    for ev, eid in zip(events, event_ids(starts), strict=True):
        ev["event_id"] = eid
        if ev["request_id"] is None:
            ev["request_id"] = eid
    return events
