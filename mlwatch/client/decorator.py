"""``@monitor``: record every call of a prediction function, sync or ``async``.

The calling thread does as little as possible — one ``random()`` for sampling, a
shallow copy of a dict input, two ``perf_counter_ns`` around the call and a tuple
appended to the shipper's deque (:meth:`Shipper.record`). Everything else runs on
the worker (:mod:`mlwatch.client.events`).

Guarantees: the wrapper keeps the function's metadata and signature
(``functools.wraps``; FastAPI introspects it), an ``async def`` stays a coroutine
function, the function's own exceptions propagate unchanged (the same object),
and monitoring itself never raises into the caller nor blocks it. Bad *arguments*
to ``monitor()`` are programmer errors and raise :class:`ConfigError` at decoration.

``features`` names the parameter holding the inputs (default: the first positional
parameter, skipping ``self``/``cls``), or is a callable ``(args, kwargs) -> inputs``
run on the calling thread before the call (keep it cheap: return the raw object;
conversion happens on the worker). ``request_id`` works the same way but runs after
the call (it may read a context variable set by the function). Exceptions that are
not ``Exception`` (``KeyboardInterrupt``, ``asyncio.CancelledError``) pass through
unrecorded: they are not model errors.

What is kept: every call is counted with its latency and status. ``sample_rate``
(default: the ``sample_rate`` setting) is the share of calls whose *features* are
kept; a sampled-out call still records its prediction and request id, with
``features`` null. ``capture=False`` records counts, latency and status only:
``features`` and ``prediction`` are null (the request id is still recorded).
With ``batch=True`` each row takes one slot of the queue bound (``queue_size``).

Options are checked at decoration: ``labels`` names match
``[A-Za-z_][A-Za-z0-9_]{0,63}`` and values are strings of at most 128 printable
characters; ``run_id`` is a string of at most 128 printable characters; ``params`` is
a mapping (made JSON-able once, here).

>>> from mlwatch.client import runtime
>>> from mlwatch.client.local import MemoryExporter
>>> from mlwatch.settings import Config
>>> sink = MemoryExporter()  # an in-memory sink instead of the sidecar
>>> _ = runtime.start(Config(model="iris", version="3"), exporter=sink)
>>> @monitor(feature_names=["x"])
... def predict(x):
...     return 2 * x
>>> predict(21), predict.__name__
(42, 'predict')
>>> runtime.flush()
True
>>> event = sink.records["events"][0]
>>> event["model"], event["version"], event["features"], event["prediction"], event["status"]
('iris', '3', {'x': 21}, 42, 'ok')
>>> runtime.shutdown()
True
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter_ns
from typing import Any, TypeVar, cast

from mlwatch.client import runtime as _rt
from mlwatch.client.events import NO_PAYLOAD, Site
from mlwatch.client.features import count_rows, to_jsonable
from mlwatch.errors import ConfigError
from mlwatch.ratelimit import failures
from mlwatch.wire import LABEL_KEY_RE, MAX_LABELS, MAX_NAME, NAME_RE

F = TypeVar("F", bound=Callable[..., Any])
ArgSpec = str | Callable[[tuple[Any, ...], dict[str, Any]], Any] | None
_random = random.random  # module-level so tests may seed or replace it
_NOWHERE = 1 << 30  # index of a keyword-only parameter: never positional


def _position(fn: Callable[..., Any], spec: str | None, option: str) -> tuple[int, str | None]:
    """Where a parameter is in a call: (positional index, keyword name)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature
        if spec is not None:
            raise ConfigError(option, f"cannot read the signature of {fn!r}") from None
        return 0, None
    if spec is None:  # the first positional parameter, skipping self/cls
        skip = 1 if params and params[0].name in ("self", "cls") else 0
        params = params[skip:]
        if params and params[0].kind in (params[0].POSITIONAL_ONLY,
                                         params[0].POSITIONAL_OR_KEYWORD,
                                         params[0].VAR_POSITIONAL):
            return skip, params[0].name
        return skip, None
    for i, p in enumerate(params):
        if p.name == spec:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                break
            return (_NOWHERE if p.kind is p.KEYWORD_ONLY else i), spec
    names = ", ".join(p.name for p in params)
    raise ConfigError(option, f"{fn.__qualname__}() has no parameter {spec!r} (has: {names})")


def _text(value: Any, lo: int) -> bool:
    """A string of ``lo`` to MAX_NAME printable characters (what the wire takes in names)."""
    return isinstance(value, str) and lo <= len(value) <= MAX_NAME and value.isprintable()


def _check_labels(labels: Any) -> None:
    if not isinstance(labels, Mapping) or len(labels) > MAX_LABELS:
        raise ConfigError("labels", f"expected a mapping of at most {MAX_LABELS} labels")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.match(key):
            raise ConfigError("labels", f"label names are letters, digits and '_' (at most 64), "
                              f"not starting with a digit; got {key!r}")
        if not _text(value, 0):
            raise ConfigError("labels", f"label {key!r}: expected a string of at most "
                              f"{MAX_NAME} printable characters, got {value!r:.60}")


def _check(model: str | None, version: str | None, sample_rate: float | None,
           labels: Mapping[str, str] | None, feature_names: Sequence[str] | None,
           prediction: Any, features: Any, request_id: Any, run_id: Any, params: Any) -> None:
    if model is not None and (not isinstance(model, str) or not NAME_RE.match(model)):
        raise ConfigError("model", f"expected letters, digits and '_.:-' (at most {MAX_NAME}), "
                          f"got {model!r}")
    if version is not None and not _text(version, 1):
        raise ConfigError("version", f"expected a string of 1 to {MAX_NAME} printable "
                          f"characters, got {version!r:.60}")
    if run_id is not None and not _text(run_id, 0):
        raise ConfigError("run_id", f"expected a string of at most {MAX_NAME} printable "
                          f"characters, got {run_id!r:.60}")
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError("params", f"expected a mapping of parameter names to values, got "
                          f"{type(params).__name__}")
    if sample_rate is not None and not (isinstance(sample_rate, (int, float))
                                        and 0.0 <= sample_rate <= 1.0):
        raise ConfigError("sample_rate", f"expected a number from 0 to 1, got {sample_rate!r}")
    if labels is not None:
        _check_labels(labels)
    if feature_names is not None and (isinstance(feature_names, str) or not all(
            isinstance(n, str) for n in feature_names)):
        raise ConfigError("feature_names", "expected a sequence of strings")
    for option, value in (("prediction", prediction), ("features", features),
                          ("request_id", request_id)):
        if value is not None and not isinstance(value, str) and not callable(value):
            raise ConfigError(option, f"expected a name or a callable, got {value!r}")


def monitor(model: str | Callable[..., Any] | None = None, version: str | None = None, *,
            batch: bool = False, features: ArgSpec = None,
            feature_names: Sequence[str] | None = None,
            prediction: str | Callable[[Any], Any] | None = None, request_id: ArgSpec = None,
            capture: bool = True, sample_rate: float | None = None,
            labels: Mapping[str, str] | None = None, params: Mapping[str, Any] | None = None,
            run_id: str | None = None) -> Any:
    """Decorate a prediction function (``@monitor``, ``@monitor("iris", "3")``, …)."""
    if callable(model):  # bare @monitor
        return monitor()(model)
    _check(model, version, sample_rate, labels, feature_names, prediction, features, request_id,
           run_id, params)
    try:
        jparams = to_jsonable(dict(params)) if params else None
    except Exception as exc:
        raise ConfigError("params", f"cannot be made JSON: {exc!r}") from None

    def decorate(fn: F) -> F:
        site = Site(name=getattr(fn, "__name__", "model"), model=model, version=version,
                    batch=batch, feature_names=tuple(feature_names) if feature_names else None,
                    prediction=prediction, capture=capture, sample_rate=sample_rate,
                    labels=dict(labels) if labels else None, params=jparams,
                    run_id=run_id or None)
        fx = features if callable(features) else None
        idx, name = (0, None) if fx else _position(fn, cast("str | None", features), "features")
        rx = request_id if callable(request_id) else None
        ridx, rname = (_NOWHERE, None) if rx or request_id is None else _position(
            fn, cast(str, request_id), "request_id")
        has_rid = request_id is not None

        def before(rt: _rt.Runtime, args: tuple[Any, ...], kwargs: dict[str, Any]
                   ) -> tuple[Any, int]:
            """Inputs to keep (or NO_PAYLOAD) and the row count; on the calling thread."""
            try:
                if capture:
                    rate = rt.sample_rate if sample_rate is None else sample_rate
                    keep = rate >= 1.0 or _random() < rate
                else:
                    keep = False
                if not (keep or batch):
                    return NO_PAYLOAD, 1
                if fx is not None:
                    x = fx(args, kwargs)
                else:
                    x = args[idx] if idx < len(args) else kwargs.get(name) if name else None
                if type(x) is dict:
                    x = x.copy()  # the caller may mutate it after we return
                elif batch and type(x) is list:
                    x = [r.copy() if type(r) is dict else r for r in x]
                if batch:
                    return (x if keep else NO_PAYLOAD), count_rows(x)
                return x, 1
            except Exception as exc:
                failures.warning("features.select", "mlwatch: selecting the inputs of %s "
                                 "failed: %r", site.name, exc)
                return None, 1  # null features; the prediction is still kept

        def after(sink: Any, lat: int, x: Any, result: Any, err: str | None, rows: int,
                  args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            """Queue the call; swallow (and log) any failure of our own."""
            try:
                rid = None
                if has_rid:
                    try:
                        rid = rx(args, kwargs) if rx is not None else (
                            args[ridx] if ridx < len(args) else kwargs.get(rname))  # type: ignore[arg-type]
                    except Exception as exc:
                        failures.warning("request_id", "mlwatch: request_id of %s failed: %r",
                                         site.name, exc)
                if not capture:
                    result = None
                elif type(result) is dict:
                    result = result.copy()
                if batch:
                    sink.record_rows(site, lat, x, result, rid, err, rows)
                else:
                    sink.record(site, lat, x, result, rid, err)
            except Exception as exc:
                failures.error("record", "mlwatch: recording a call of %s failed: %r",
                               site.name, exc)

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                rt = _rt._current or _rt.current()
                sink = rt.sink
                if sink is None:
                    return await fn(*args, **kwargs)
                if not batch and len(sink.queue) + sink.extra_rows >= sink.maxlen:  # full: skip
                    sink.drops.add(site, "queue_full")
                    return await fn(*args, **kwargs)
                x, rows = before(rt, args, kwargs)
                t0 = perf_counter_ns()
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    after(sink, perf_counter_ns() - t0, x, None, type(exc).__name__, rows,
                          args, kwargs)
                    raise
                after(sink, perf_counter_ns() - t0, x, result, None, rows, args, kwargs)
                return result
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            rt = _rt._current or _rt.current()
            sink = rt.sink
            if sink is None:
                return fn(*args, **kwargs)
            if not batch and len(sink.queue) + sink.extra_rows >= sink.maxlen:  # full: skip
                sink.drops.add(site, "queue_full")
                return fn(*args, **kwargs)
            x, rows = before(rt, args, kwargs)
            t0 = perf_counter_ns()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                after(sink, perf_counter_ns() - t0, x, None, type(exc).__name__, rows,
                      args, kwargs)
                raise
            after(sink, perf_counter_ns() - t0, x, result, None, rows, args, kwargs)
            return result
        return wrapper  # type: ignore[return-value]

    return decorate
