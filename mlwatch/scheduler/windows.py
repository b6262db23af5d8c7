"""Which window a run evaluates, and where a window's profile comes from.

Tumbling windows end at the last multiple of the window size that is at least
``settle`` (60 s) in the past — the last complete, settled window, so events still in
clients' queues and the spool when it closed are in it; a sliding window ends now.
A window's profile, on the reference's bins, comes from the embedded store (the
sidecar's slice profiles merged when they cover every event of the window, else the
events read as columns) or, with ``window_source: elasticsearch``, from aggregations
(:mod:`mlwatch.elastic.aggregations`; no rows pulled).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from mlwatch.errors import JobError
from mlwatch.settings import Config, Monitoring
from mlwatch.store import EmbeddedStore


def window_bounds(mon: Monitoring, now_s: float) -> tuple[int, int]:
    """``[start, end)`` in microseconds of the window a run at ``now_s`` evaluates.

    >>> from mlwatch.settings import Monitoring
    >>> window_bounds(Monitoring(window_s=3600), 7300.0)
    (3600000000, 7200000000)
    >>> window_bounds(Monitoring(window_s=3600, sliding=True), 7300.0)
    (3700000000, 7300000000)
    >>> window_bounds(Monitoring(window_s=3600), 7230.0)  # closed 30 s ago: not settled yet
    (0, 3600000000)
    """
    size_us = int(mon.window_s * 1_000_000)
    now_us = int(now_s * 1_000_000)
    if mon.sliding:
        return now_us - size_us, now_us
    settled = now_us - int(mon.settle_s * 1_000_000)
    end = settled - settled % size_us
    return end - size_us, end


def kpi_windows(
    mon: Monitoring, now_s: float, window: tuple[int, int] | None = None
) -> list[tuple[int, int]]:
    """The windows a KPI run computes: the last ``kpi_lookback`` tumbling windows (so late
    labels update their own window), the one sliding window ending now, or ``window``.

    >>> from mlwatch.settings import Monitoring
    >>> kpi_windows(Monitoring(window_s=10, settle_s=0, kpi_lookback=2), 25.0)
    [(0, 10000000), (10000000, 20000000)]
    """
    if window is None and mon.sliding:
        window = window_bounds(mon, now_s)
    if window is not None:
        return [window]
    size_us = int(mon.window_s * 1_000_000)
    _, end = window_bounds(mon, now_s)
    start = end - size_us * mon.kpi_lookback
    return [(w, min(w + size_us, end)) for w in range(start, end, size_us)]


class WindowSource(Protocol):
    """Versions served in a window, and a window's profile on a reference's bins."""

    def versions(self, model: str, start: int, end: int) -> list[str]: ...

    def profile(self, ref: Any, model: str, version: str, start: int, end: int) -> Any: ...

    def close(self) -> None: ...


class StoreWindows:
    """Windows of the embedded store, of one environment's events (the sidecar profiles
    only those of its own, so the slices and the counts agree)."""

    def __init__(self, store: EmbeddedStore, environment: str | None = None) -> None:
        self.store = store
        self.environment = environment

    def versions(self, model: str, start: int, end: int) -> list[str]:
        return self.store.versions(
            model, since_us=start, until_us=end, environment=self.environment
        )

    def profile(self, ref: Any, model: str, version: str, start: int, end: int) -> Any:
        merged = self.merged_slices(ref, model, version, start, end)
        if merged is not None:
            return merged
        current = ref.new_window()
        current.update(
            self.store.feature_columns(
                model,
                list(ref.types),
                since_us=start,
                until_us=end,
                version=version,
                environment=self.environment,
            )
        )
        return current

    def merged_slices(self, ref: Any, model: str, version: str, start: int, end: int) -> Any:
        """The sidecar's slice profiles merged over the window, if they cover every event
        of it (same reference layout, same row count); else None."""
        from mlwatch.stats.profile import DatasetProfile

        slices = [
            s
            for s in self.store.profiles(model, version, "slice", since_us=start, until_us=end)
            if s[1] <= end
        ]
        if not slices:
            return None
        try:
            merged = ref.new_window()
            for _, _, body in slices:
                merged = merged.merge(DatasetProfile.from_json(body))
        except ValueError:  # built on another reference: not usable
            return None
        expected = self.store.count_with_features(
            model, since_us=start, until_us=end, version=version, environment=self.environment
        )
        return merged if merged.rows == expected else None

    def close(self) -> None:
        pass  # the store belongs to whoever opened it


class ElasticWindows:
    """Windows of Elasticsearch, by aggregations on the reference's bins, of the
    scheduler's environment only (as :class:`StoreWindows`: a shared namespace, or a
    sidecar's stream, may hold other environments' events)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._client: Any = None
        self._lock = threading.Lock()  # the jobs of several models share one client

    def _es(self) -> Any:
        with self._lock:
            if self._client is None:
                if not self.config.elasticsearch_url:
                    raise JobError("window_source is elasticsearch but elasticsearch_url is unset")
                from mlwatch.elastic.client import make_client

                self._client = make_client(self.config)
            return self._client

    def versions(self, model: str, start: int, end: int) -> list[str]:
        from mlwatch.elastic import aggregations

        return aggregations.versions(
            self._es(),
            self.config.data_stream_namespace,
            model,
            start,
            end,
            environment=self.config.environment,
        )

    def profile(self, ref: Any, model: str, version: str, start: int, end: int) -> Any:
        from mlwatch.elastic import aggregations

        return aggregations.window_profile(
            self._es(),
            ref,
            namespace=self.config.data_stream_namespace,
            model=model,
            version=version,
            start_us=start,
            end_us=end,
            environment=self.config.environment,
        )

    def close(self) -> None:
        """Release the client, if one was opened."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def window_source(config: Config, store: EmbeddedStore) -> WindowSource:
    """The source ``window_source`` names."""
    if config.window_source == "elasticsearch":
        return ElasticWindows(config)
    return StoreWindows(store, config.environment)
