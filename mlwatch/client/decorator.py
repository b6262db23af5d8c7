"""``@monitor``: record every call of a prediction function, sync or ``async``.

The calling thread does as little as possible — one ``random()`` for sampling, a
shallow copy of a dict input, two ``perf_counter_ns`` around the call and a tuple
appended to the shipper's deque (:meth:`Shipper.record`). Everything else runs on
the worker (:mod:`mlwatch.client.events`).

Guarantees: the wrapper keeps the function's metadata and signature
(``functools.wraps``; FastAPI introspects it), an ``async def`` stays a coroutine
function, the function's own exceptions propagate unchanged (the same object), and
monitoring itself never raises into the caller nor blocks it. Exceptions that are not
``Exception`` (``KeyboardInterrupt``, ``asyncio.CancelledError``) pass through
unrecorded: they are not model errors. The options and what is kept (sampling,
``capture=False``, batches) are documented in docs/python-api.md; they are checked at
decoration (:mod:`mlwatch.client.options`).

>>> from mlwatch.client import runtime
>>> from mlwatch.client.memory import MemoryExporter
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
from typing import Any, TypeVar, cast, overload

from mlwatch.client import runtime as _rt
from mlwatch.client.events import NO_PAYLOAD
from mlwatch.client.features import count_rows, to_jsonable
from mlwatch.client.options import NOWHERE, check, position
from mlwatch.client.site import Site
from mlwatch.errors import ConfigError
from mlwatch.logs import failures

F = TypeVar("F", bound=Callable[..., Any])
ArgSpec = str | Callable[[tuple[Any, ...], dict[str, Any]], Any] | None
Before = Callable[[Any, tuple[Any, ...], dict[str, Any]], tuple[Any, int]]
After = Callable[[Any, int, Any, Any, "str | None", int, tuple[Any, ...], dict[str, Any]], None]
_random = random.random  # module-level so tests may seed or replace it


@overload
def monitor(model: F) -> F: ...


@overload
def monitor(
    model: str | None = None,
    version: str | None = None,
    *,
    batch: bool = False,
    features: ArgSpec = None,
    feature_names: Sequence[str] | None = None,
    prediction: str | Callable[[Any], Any] | None = None,
    request_id: ArgSpec = None,
    capture: bool = True,
    sample_rate: float | None = None,
    labels: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> Callable[[F], F]: ...


def monitor(
    model: str | Callable[..., Any] | None = None,
    version: str | None = None,
    *,
    batch: bool = False,
    features: ArgSpec = None,
    feature_names: Sequence[str] | None = None,
    prediction: str | Callable[[Any], Any] | None = None,
    request_id: ArgSpec = None,
    capture: bool = True,
    sample_rate: float | None = None,
    labels: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> Any:
    """Decorate a prediction function (``@monitor``, ``@monitor("iris", "3")``, …)."""
    if callable(model):  # bare @monitor
        return monitor()(model)
    check(
        model,
        version,
        sample_rate,
        labels,
        feature_names,
        prediction,
        features,
        request_id,
        run_id,
        params,
    )
    try:
        jparams = to_jsonable(dict(params)) if params else None
    except Exception as exc:
        raise ConfigError("params", f"cannot be made JSON: {exc!r}") from None

    def decorate(fn: F) -> F:
        site = Site(
            name=getattr(fn, "__name__", "model"),
            model=model,
            version=version,
            batch=batch,
            feature_names=tuple(feature_names) if feature_names else None,
            prediction=prediction,
            capture=capture,
            sample_rate=sample_rate,
            labels=dict(labels) if labels else None,
            params=jparams,
            run_id=run_id or None,
        )
        before = _before_hook(fn, site, features)
        after = _after_hook(fn, site, request_id)
        if inspect.iscoroutinefunction(fn):
            return cast(F, _async_wrapper(fn, site, before, after))
        return cast(F, _sync_wrapper(fn, site, before, after))

    return decorate


def _before_hook(fn: Callable[..., Any], site: Site, features: ArgSpec) -> Before:
    """What runs on the calling thread before the call: the inputs to keep (or
    NO_PAYLOAD) and the row count."""
    capture, batch, sample_rate = site.capture, site.batch, site.sample_rate
    fx = features if callable(features) else None
    idx, name = (0, None) if fx else position(fn, cast("str | None", features), "features")

    def before(rt: _rt.Runtime, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, int]:
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
            failures.warning(
                "features.select", "mlwatch: selecting the inputs of %s failed: %r", site.name, exc
            )
            return None, 1  # null features; the prediction is still kept

    return before


def _after_hook(fn: Callable[..., Any], site: Site, request_id: ArgSpec) -> After:
    """What runs on the calling thread after the call: queue it; swallow (and log) any
    failure of our own."""
    capture, batch = site.capture, site.batch
    rx = request_id if callable(request_id) else None
    ridx, rname = (
        (NOWHERE, None)
        if rx or request_id is None
        else position(fn, cast(str, request_id), "request_id")
    )
    has_rid = request_id is not None

    def after(
        sink: Any,
        lat: int,
        x: Any,
        result: Any,
        err: str | None,
        rows: int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        try:
            rid = None
            if has_rid:
                try:
                    if rx is not None:
                        rid = rx(args, kwargs)
                    elif ridx < len(args):
                        rid = args[ridx]
                    elif rname is not None:
                        rid = kwargs.get(rname)
                except Exception as exc:
                    failures.warning(
                        "request_id", "mlwatch: request_id of %s failed: %r", site.name, exc
                    )
            if not capture:
                result = None
            elif type(result) is dict:
                result = result.copy()
            if batch:
                sink.record_rows(site, lat, x, result, rid, err, rows)
            else:
                sink.record(site, lat, x, result, rid, err)
        except Exception as exc:
            failures.error("record", "mlwatch: recording a call of %s failed: %r", site.name, exc)

    return after


def _sync_wrapper(
    fn: Callable[..., Any], site: Site, before: Before, after: After
) -> Callable[..., Any]:
    batch = site.batch

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
            after(sink, perf_counter_ns() - t0, x, None, type(exc).__name__, rows, args, kwargs)
            raise
        after(sink, perf_counter_ns() - t0, x, result, None, rows, args, kwargs)
        return result

    return wrapper


def _async_wrapper(
    fn: Callable[..., Any], site: Site, before: Before, after: After
) -> Callable[..., Any]:
    batch = site.batch

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
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
            after(sink, perf_counter_ns() - t0, x, None, type(exc).__name__, rows, args, kwargs)
            raise
        after(sink, perf_counter_ns() - t0, x, result, None, rows, args, kwargs)
        return result

    return wrapper
